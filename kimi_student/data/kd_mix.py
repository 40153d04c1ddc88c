"""The KD dataset: prompts -> teacher text (+ top-k logprobs), cached, resumable, fingerprinted.

Every answer is cached under `<out>.cache/` by the sha256 of its canonical request, written atomically,
so a rerun asks the teacher nothing it already answered, and a run killed at any point (SIGKILL
included) resumes without losing or repeating a record: the output JSONL and the logprob shards are
assembled from the cache, in prompt order, and replaced together at the end (the header's
`logprobs_sha256` is the shards' digest, so a reader knows which folder is the file's).

Logprob shards: `<out>.logprobs/shard-NNNNN.npz` with `token_ids` int32 (T,), `topk_ids` int32 (T, K)
and `topk_logprobs` float16 (T, K); a record points at its rows by (shard, offset, length).

Teacher-forced requests (`TeacherRequest.forced`: `kd-mix --score-gold`) are scored, not answered: the
teacher reads the whole sequence the student trains on in one forward, batched, and its rows are the
assistant-turn positions only; the record says `"kind": "teacher_forced"` and gives those spans
(`segments`), the prompt wrapper and the tokenizer's sha256. Cache, resume and assembly are the same.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kimi_student.backends.redact import redact
from kimi_student.chat.prompt import system_prompt
from kimi_student.errors import InputError, KimiStudentError
from kimi_student.fingerprint import sha256_dir, sha256_json
from kimi_student.jsonl import atomic_writer, read_jsonl, write_jsonl
from kimi_student.outputs import aside_path, pair_writer
from kimi_student.teachers.base import (
    Decoding,
    ScoringTeacher,
    Teacher,
    TeacherError,
    TeacherReply,
    TeacherRequest,
)

KD_VERSION = "kd-1"
SHARD_TOKENS = 1 << 20


def load_prompts(path: str | Path, system: bool = True) -> list[TeacherRequest]:
    """Requests from a contextual dataset (its `prompt`s) or a prompt JSONL ({id, prompt} or {id, messages})."""
    p = Path(path)
    out: list[TeacherRequest] = []
    seen: set[str] = set()
    sys_msg = ({"role": "system", "content": system_prompt()},) if system else ()
    for line, row in read_jsonl(p):
        if row.get("__header__"):
            continue
        if not isinstance(row.get("id"), str):
            raise InputError(p, line, "id", "missing or not a string")
        if row["id"] in seen:
            raise InputError(p, line, "id", f"duplicate id {row['id']!r}")
        seen.add(row["id"])
        if isinstance(row.get("messages"), list):
            if not all(isinstance(m, dict) for m in row["messages"]):
                raise InputError(p, line, "messages", "each message must be an object")
            msgs = tuple(
                {"role": str(m.get("role")), "content": str(m.get("content"))} for m in row["messages"]
            )
        elif isinstance(row.get("prompt"), str):
            msgs = (*sys_msg, {"role": "user", "content": row["prompt"]})
        else:
            raise InputError(p, line, "prompt", "need a string `prompt` or a `messages` list")
        out.append(TeacherRequest(row["id"], msgs, Decoding()))
    return out


def with_decoding(requests: list[TeacherRequest], decoding: Decoding) -> list[TeacherRequest]:
    return [TeacherRequest(r.id, r.messages, decoding) for r in requests]


def usable(hit: Any) -> bool:
    """A cached answer that assembles: string text, and logprob rows of one width, one per token id."""
    if not isinstance(hit, dict) or not isinstance(hit.get("text"), str):
        return False
    ids, lps, toks = hit.get("topk_ids") or [], hit.get("topk_logprobs") or [], hit.get("token_ids") or []
    if not (isinstance(ids, list) and isinstance(lps, list) and isinstance(toks, list)):
        return False
    if len(ids) != len(lps) or (toks and len(toks) != len(ids)):
        return False
    widths = {len(r) for r in ids if isinstance(r, list)} | {len(r) for r in lps if isinstance(r, list)}
    return not ids or (len(widths) == 1 and all(isinstance(r, list) for r in (*ids, *lps)))


@dataclass
class Cache:
    folder: Path

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            hit = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):  # cannot happen with atomic writes; be safe
            return None
        return hit if usable(hit) else None  # an answer an older version kept wrongly is asked again

    def put(self, key: str, reply: TeacherReply) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(p) as fh:
            json.dump(reply.__dict__, fh, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())


async def _run(
    teacher: Teacher, requests: list[TeacherRequest], cache: Cache, on_done: Callable[[bool], None]
) -> dict[str, str]:
    """Ask the teacher every request not yet cached. Returns {key: failure reason} for failures."""
    sem = asyncio.Semaphore(max(1, teacher.concurrency))
    failures: dict[str, str] = {}

    async def one(req: TeacherRequest) -> None:
        key = req.key(teacher.id)
        async with sem:
            try:
                reply = await teacher.complete(req)
            except TeacherError as e:
                failures[key] = str(e)
                on_done(False)
                return
        cache.put(key, reply)
        on_done(True)

    await asyncio.gather(*(one(r) for r in requests))
    await teacher.aclose()
    return failures


async def _score(
    teacher: Teacher, requests: list[TeacherRequest], cache: Cache, on_done: Callable[[bool], None]
) -> dict[str, str]:
    """Score every teacher-forced request not yet cached, `batch_size` sequences per forward, shortest
    first (little padding). Each answer is cached as soon as its batch is done: a kill loses one batch."""
    if not callable(getattr(teacher, "score", None)):
        raise KimiStudentError(f"teacher {teacher.id} cannot score given sequences (use an hf: teacher)")
    scorer: ScoringTeacher = teacher  # type: ignore[assignment]
    order = sorted(requests, key=lambda r: len(r.forced.token_ids) if r.forced else 0)
    failures: dict[str, str] = {}
    for i in range(0, len(order), max(1, scorer.batch_size)):
        batch = order[i : i + max(1, scorer.batch_size)]
        try:
            replies = await asyncio.to_thread(scorer.score, batch)
        except TeacherError as e:
            for req in batch:
                failures[req.key(teacher.id)] = str(e)
                on_done(False)
            continue
        for req, reply in zip(batch, replies, strict=True):
            cache.put(req.key(teacher.id), reply)
            on_done(True)
    await teacher.aclose()
    return failures


def build_kd_mix(
    teacher: Teacher,
    requests: list[TeacherRequest],
    out: str | Path,
    prompt_set_sha256: str,
    progress: bool = False,
    shard_tokens: int = SHARD_TOKENS,
) -> dict[str, Any]:
    """Run (or resume) a KD mix and write `out` plus its shards. Returns the header plus `from_cache`."""
    from tqdm import tqdm

    out = Path(out)
    cache = Cache(out.parent / (out.name + ".cache"))
    todo, cached, repeated = [], 0, 0
    seen_keys: set[str] = set()
    for r in requests:
        k = r.key(teacher.id)
        if k in seen_keys:
            repeated += 1  # asked once, for its first occurrence
        elif cache.get(k) is not None:
            cached += 1
        else:
            todo.append(r)
        seen_keys.add(k)
    bar = tqdm(total=len(todo), disable=not progress, unit="req", desc=f"teacher {teacher.id}")
    counts = {"ok": 0, "failed": 0}

    def done(ok: bool) -> None:
        counts["ok" if ok else "failed"] += 1
        bar.update(1)

    scored = bool(requests) and requests[0].forced is not None
    if any((r.forced is not None) != scored for r in requests):
        raise KimiStudentError("a KD mix is all generated or all teacher-forced, not both")
    failures = asyncio.run((_score if scored else _run)(teacher, todo, cache, done)) if todo else {}
    bar.close()
    header = _assemble(teacher, requests, cache, failures, out, prompt_set_sha256, shard_tokens)
    return {**header, "from_cache": cached, "repeated": repeated}  # run statistics: not in the file


class _Shards:
    """Top-k logprob rows packed into `shard-NNNNN.npz` files in a scratch folder: a record's rows start a
    new shard when they would overflow `shard_tokens` (one record alone may exceed it)."""

    def __init__(self, tmp_dir: Path, final_name: str, shard_tokens: int):
        self.tmp_dir, self.final_name, self.shard_tokens = tmp_dir, final_name, shard_tokens
        self.buf: dict[str, list[np.ndarray]] = {"token_ids": [], "topk_ids": [], "topk_logprobs": []}
        self.shard, self.offset, self.tokens, self.bytes, self.k = 0, 0, 0, 0, 0

    def add(self, hit: dict[str, Any]) -> dict[str, Any]:
        """Buffer one cached answer's logprobs; returns the record's pointer to its rows."""
        ids = np.asarray(hit["topk_ids"], dtype=np.int32)
        lps = np.asarray(hit["topk_logprobs"], dtype=np.float16)
        toks = np.asarray(hit["token_ids"] or [-1] * len(ids), dtype=np.int32)
        self.k = max(self.k, ids.shape[1])
        if self.offset and self.offset + len(ids) > self.shard_tokens:
            self.flush()
        pointer = {
            "shard": f"{self.final_name}/shard-{self.shard:05d}.npz",
            "offset": self.offset,
            "length": len(ids),
            "k": int(ids.shape[1]),
            "temperature": hit.get("logprob_temperature"),
        }
        self.buf["token_ids"].append(toks)
        self.buf["topk_ids"].append(ids)
        self.buf["topk_logprobs"].append(lps)
        self.offset += len(ids)
        self.tokens += len(ids)
        return pointer

    def flush(self) -> None:
        if not self.buf["token_ids"]:
            return
        arrays = {k: np.concatenate(v) for k, v in self.buf.items()}
        np.savez(self.tmp_dir / f"shard-{self.shard:05d}.npz", **arrays)
        self.bytes += sum(a.nbytes for a in arrays.values())
        for v in self.buf.values():
            v.clear()
        self.shard, self.offset = self.shard + 1, 0


def _record(req: TeacherRequest, key: str, hit: dict[str, Any] | None, error: str, shards: _Shards) -> dict:
    """One output row: the cached answer (its logprobs go to the shards), or the failure and its reason."""
    rec: dict[str, Any] = {"id": req.id, "request_sha256": key, "messages": list(req.messages)}
    if hit is None:
        return {**rec, "status": "failed", "error": redact(error)}
    rec.update(status="ok", text=hit["text"], finish_reason=hit.get("finish_reason"), usage=hit.get("usage"))
    if hit.get("topk_logprobs"):
        rec["logprobs"] = shards.add(hit)
    if req.forced is not None:  # what the trainer needs to put the rows back where they were scored
        f = req.forced
        rec.update(
            kind="teacher_forced",
            segments=[list(s) for s in f.segments],
            wrapper=f.wrapper,
            tokenizer_sha256=f.tokenizer_sha256,
            precision=f.precision,
        )
    return rec


def _header(
    teacher: Teacher,
    requests: list[TeacherRequest],
    prompt_set_sha256: str,
    rows: list[dict],
    shards: _Shards,
    logprobs_sha256: str,
) -> dict[str, Any]:
    n_failed = sum(row["status"] == "failed" for row in rows)
    forced = requests[0].forced if requests else None
    kind = {"kind": "teacher_forced", "wrapper": forced.wrapper} if forced else {}
    return {
        "__header__": True,
        "kd_version": KD_VERSION,
        "teacher": teacher.id,
        "decoding": requests[0].decoding.to_json() if requests else None,
        "prompt_set_sha256": prompt_set_sha256,
        "records": len(rows),
        "ok": len(rows) - n_failed,
        "failed": n_failed,
        "logprob_tokens": shards.tokens,
        "logprob_k": shards.k,
        "logprob_bytes_per_token": shards.bytes / shards.tokens if shards.tokens else None,
        "logprobs_sha256": logprobs_sha256,
        **kind,
    }


def logprobs_folder(out: Path) -> Path:
    return out.parent / (out.name + ".logprobs")


def logprobs_belong(out: Path, folder: Path) -> bool:
    """Whether `folder` holds the shards of the KD file at `out` (its header's logprobs_sha256)."""
    try:
        _, header = next(read_jsonl(out))
    except (InputError, OSError, StopIteration):
        return False
    return header.get("logprobs_sha256") == sha256_dir(folder, "*.npz")


def clear_legacy_scratch(out: Path) -> None:
    """Remove the scratch folders that versions before the pair writer left when killed while assembling
    (`.shards.XXXXXXXX`, later `.<out>.shards.XXXXXXXX`; review D17): this version never makes them, so no
    run of it is writing there. Only folders holding nothing but shard files are taken."""
    legacy = re.compile(rf"\.(?:{re.escape(out.name)}\.)?shards\.[a-z0-9_]{{8}}")
    for p in out.parent.iterdir():
        if legacy.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
            if all(f.is_file() and re.fullmatch(r"shard-\d{5}\.npz", f.name) for f in p.iterdir()):
                shutil.rmtree(p, ignore_errors=True)


def _assemble(
    teacher: Teacher,
    requests: list[TeacherRequest],
    cache: Cache,
    failures: dict[str, str],
    out: Path,
    prompt_set_sha256: str,
    shard_tokens: int,
) -> dict[str, Any]:
    """The output JSONL and its shards from the cache, in prompt order, replaced together or not at all
    (`outputs.pair_writer`: a kill between the two renames leaves the old pair or the new one; the
    header holds the shards' digest, which tells them apart). Scratch folders of killed runs go first."""
    shard_dir = logprobs_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)  # not made yet when no answer was cached
    clear_legacy_scratch(out)
    with pair_writer(out, shard_dir, logprobs_belong) as (new_out, new_dir):
        shards = _Shards(new_dir, shard_dir.name, shard_tokens)
        rows = []
        for r in requests:
            key = r.key(teacher.id)
            rows.append(_record(r, key, cache.get(key), failures.get(key, "not answered"), shards))
        shards.flush()
        header = _header(teacher, requests, prompt_set_sha256, rows, shards, sha256_dir(new_dir, "*.npz"))
        os.chmod(new_dir, 0o755)
        write_jsonl(new_out, [header, *rows])  # reruns are byte-identical: run statistics stay out
    if not shards.tokens:
        with suppress(OSError):
            shard_dir.rmdir()  # no logprobs asked for: no folder
    return header


def prompt_set_sha256(requests: list[TeacherRequest]) -> str:
    return sha256_json([[r.id, list(r.messages), *([r.forced.text] if r.forced else [])] for r in requests])


def read_logprobs(kd_path: str | Path, record: dict[str, Any]) -> dict[str, np.ndarray]:
    """The (token_ids, topk_ids, topk_logprobs) rows of one record."""
    lp, kd_path = record["logprobs"], Path(kd_path)
    shard = kd_path.parent / lp["shard"]
    aside = aside_path(shard.parent)
    if aside.is_dir() and logprobs_belong(kd_path, aside):  # a swap was cut short: see pair_writer
        shard = aside / shard.name
    with np.load(shard) as z:
        s, n = lp["offset"], lp["length"]
        return {k: z[k][s : s + n] for k in ("token_ids", "topk_ids", "topk_logprobs")}
