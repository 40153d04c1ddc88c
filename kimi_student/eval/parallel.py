"""Scoring at scale: items split by sha256(id) over shards (`--shard i/n`, one job per machine) and over
worker processes (`--workers N`, one machine). Each worker appends its scored rows to a part file under
`<out>.parts/`, a batch at a time, so a killed run resumes where it stopped; harness.py puts the rows
back in dataset order once every item is done.

A part file is JSONL: line 1 `{"__part__": true, "identity": ..., runner facts}`, then one result row per
item. The identity is everything a row depends on (dataset, runner spec, shard, tokenizer, fixtures,
registry, code); a restart with another identity is refused. A last line without its newline (the
writer was killed mid-write) is dropped.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_student.chat.prompt import prompt_wrapper_sha256
from kimi_student.errors import InputError, KimiStudentError
from kimi_student.eval.runners.base import Runner, RunnerSpec
from kimi_student.eval.runners.registry import make_runner
from kimi_student.eval.score.item import score_item
from kimi_student.jsonl import dumps_line
from kimi_student.tokenizer import load_tokenizer
from kimi_student.tools.broker import ToolBroker

BATCH = 64  # items scored, written and flushed together: the most a kill can lose
LOCK_WAIT_S = 10.0


def item_hash(item_id: str) -> int:
    return int(hashlib.sha256(item_id.encode("utf-8")).hexdigest(), 16)


def shard_of(h: int, shards: int) -> int:
    return h % shards


def worker_of(h: int, shards: int, workers: int) -> int:
    """Independent of the shard rule (other digits of the hash), so each shard's workers share its items
    evenly."""
    return (h // shards) % workers


FACTS = ("runner", "model_fingerprint", "decoding", "prompt_wrapper_sha256")  # a built runner's, in headers


def runner_facts(runner: Runner) -> dict[str, Any]:
    """What the report header takes from a built runner."""
    return {
        "runner": runner.name,
        "model_fingerprint": runner.model_fingerprint,
        "decoding": runner.decoding,
        "prompt_wrapper_sha256": prompt_wrapper_sha256(getattr(runner, "prompt_wrapper", "system")),
    }


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


# ---- part files -----------------------------------------------------------------------------------------


@dataclass
class Parts:
    """What the part files of a run hold so far."""

    facts: dict[str, Any] | None  # runner facts (all parts agree)
    rows: dict[str, dict[str, Any]]  # id -> result row (the first, should an id be found twice)


def _read_part(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    lines = path.read_bytes().split(b"\n")[:-1]  # the last piece is b"" or a line cut short by a kill
    objs = []
    for lineno, raw in enumerate(lines, start=1):
        try:
            objs.append(json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(path, lineno, None, f"damaged part file ({e}): rerun with --fresh") from None
    if not objs:
        return None, []
    if not objs[0].get("__part__"):
        raise InputError(path, 1, "__part__", "not a part file: rerun with --fresh")
    return objs[0], objs[1:]


def read_parts(folder: Path, identity: dict[str, Any], wanted: set[str]) -> Parts:
    """Rows scored so far by earlier or current workers. Refuses parts of another run (other identity)."""
    facts: dict[str, Any] | None = None
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        header, part_rows = _read_part(path)
        if header is None:
            continue  # killed before its header was complete
        if header["identity"] != identity:
            diff = sorted(k for k in identity if header["identity"].get(k) != identity[k])
            raise KimiStudentError(
                f"{folder} holds an unfinished run with other inputs ({', '.join(diff)} differ): "
                "rerun with --fresh to discard it"
            )
        head_facts = {k: header[k] for k in FACTS}
        if facts is not None and head_facts != facts:
            raise KimiStudentError(
                f"{path}: made with another model than the other parts: rerun with --fresh"
            )
        facts = head_facts
        for row in part_rows:
            if row.get("id") not in wanted:
                raise InputError(
                    path, None, "id", f"{row.get('id')!r} is not an item of this run: rerun with --fresh"
                )
            rows.setdefault(row["id"], row)
    return Parts(facts, rows)


def has_rows(folder: Path) -> bool:
    try:
        return any(len(_read_part(p)[1]) > 0 for p in folder.glob("*.jsonl"))
    except KimiStudentError:
        return True  # damaged: keep it for a look


def next_attempt(folder: Path) -> int:
    """Each start writes new part files (a-<attempt>-w<worker>), never appends to a killed run's."""
    return 1 + max((int(p.name.split("-")[1]) for p in folder.glob("a-*-w*.jsonl")), default=0)


@contextmanager
def locked_parts(folder: Path, fresh: bool) -> Iterator[None]:
    """Hold `<out>.parts/lock` for the run: exclusive to check that no other run (or orphaned worker) is
    writing here, then shared with this run's workers."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KimiStudentError(f"{folder}: another eval run is writing there") from None
                time.sleep(0.1)
        if fresh:
            for p in folder.glob("*.jsonl"):
                p.unlink()
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


# ---- one worker's share ------------------------------------------------------------------------------------


@dataclass
class PartJob:
    """One worker's items and everything it needs to score them (picklable, for spawned processes)."""

    worker: int
    items: list[dict[str, Any]]
    dataset_ids: frozenset[str]
    spec: RunnerSpec
    tokenizer: str
    fixture_dirs: list[str]
    part: str  # the part file to create
    identity: dict[str, Any]
    expect: dict[str, Any] | None  # runner facts of the parts written earlier, if any
    parent_pid: int | None = None  # set for spawned workers: they stop when the parent is gone
    threads: int | None = None  # spawned workers: CPU threads each (torch, BLAS, tokenizers) unless set


class Orphaned(Exception):
    pass


def result_row(item: dict[str, Any], out: Any, enc: Any, tok: Any, broker: ToolBroker) -> dict[str, Any]:
    row = {**score_item(item, out.text, enc, tok, broker, out.error).to_json(), "output": out.text}
    if out.turns is not None:
        row.update(turns=out.turns, finish=out.finish)
    return row


def score_part(job: PartJob, progress: Callable[[int], None]) -> None:
    """Build the runner, tokenizer and broker, score the job's items in batches, append each batch."""
    broker = ToolBroker.from_folders(job.fixture_dirs)
    runner = make_runner(job.spec, broker)
    try:
        check_ids = getattr(runner, "check_ids", None)
        if check_ids is not None:
            check_ids(job.dataset_ids)
        facts = runner_facts(runner)
        if job.expect is not None and facts != job.expect:
            diff = ", ".join(k for k in facts if facts[k] != job.expect.get(k))
            raise KimiStudentError(
                f"{Path(job.part).parent} holds an unfinished run of another model ({diff} differ): "
                "rerun with --fresh to discard it"
            )
        tok = load_tokenizer(job.tokenizer)
        with open(job.part, "x", encoding="utf-8") as fh:
            fh.write(dumps_line({"__part__": True, "identity": job.identity, "worker": job.worker, **facts}))
            fh.flush()
            outputs = runner.outputs(job.items)
            step = getattr(
                runner, "chunk", BATCH
            )  # a model runner's own chunk: progress and resume per chunk
            for lo in range(0, len(job.items), step):
                chunk = job.items[lo : lo + step]
                outs = [next(outputs) for _ in chunk]
                encs = tok.encode_offsets([o.text for o in outs])
                fh.write("".join(dumps_line(result_row(*a, tok, broker)) for a in zip(chunk, outs, encs)))
                fh.flush()
                progress(len(chunk))
                if job.parent_pid is not None and os.getppid() != job.parent_pid:
                    raise Orphaned
    finally:
        runner.close()


# ---- worker processes ------------------------------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills this worker when the parent dies (a SIGKILLed `eval` leaves no orphans
    writing parts). Elsewhere the worker notices after its current batch."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _worker_main(job: PartJob, q: Any) -> None:
    assert job.parent_pid is not None
    _die_with_parent(job.parent_pid)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):  # before torch is imported
        os.environ.setdefault(var, str(job.threads))
    from tqdm import tqdm  # a thread lock for progress bars (model loading shows some): tqdm's default

    # multiprocessing lock, made in a spawned child, is reported as a leaked semaphore at exit
    tqdm.set_lock(threading.RLock())
    lock = os.open(Path(job.part).parent / "lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_SH)  # held until this process ends, orphaned or not
    try:
        score_part(job, lambda n: q.put(("items", job.worker, n)))
        q.put(("done", job.worker, None))
    except Orphaned:
        os._exit(1)
    except KimiStudentError as e:
        q.put(("error", job.worker, str(e)))
    except BaseException:  # noqa: BLE001 - a crash: its traceback goes to the parent
        q.put(("crash", job.worker, f"eval worker {job.worker} crashed:\n{traceback.format_exc().rstrip()}"))


def run_jobs(jobs: list[PartJob], progress: Callable[[int], None]) -> None:
    """Run each job in its own spawned process (torch and fork do not mix); one job runs in this process.
    The first worker error (or death) stops the others and is raised here; their parts are kept."""
    if len(jobs) == 1:
        score_part(jobs[0], progress)
        return
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = {}
    for job in jobs:
        job.parent_pid = os.getpid()
        job.threads = max(1, (os.cpu_count() or 1) // len(jobs))  # the cores shared, not oversubscribed
        procs[job.worker] = ctx.Process(target=_worker_main, args=(job, q), name=f"kimi-eval-w{job.worker}")
    pending = set(procs)

    def handle(msg: tuple[str, int, Any]) -> None:
        kind, w, val = msg
        if kind == "items":
            progress(val)
        elif kind == "done":
            pending.discard(w)
        elif kind == "error":  # bad input or usage, said in one line
            raise KimiStudentError(val)
        else:
            raise KimiStudentError(f"{val}\n(items scored so far are kept: rerun the same command to resume)")

    try:
        for p in procs.values():
            p.start()
        while pending:
            try:
                handle(q.get(timeout=0.5))
                continue
            except queue.Empty:
                pass
            for w in sorted(pending):
                if procs[w].exitcode is not None:
                    while True:  # its last messages may have arrived since
                        try:
                            handle(q.get_nowait())
                        except queue.Empty:
                            break
                    if w in pending:
                        raise KimiStudentError(
                            f"eval worker {w} died (exit code {procs[w].exitcode}); items scored so far are "
                            "kept: rerun the same command to resume"
                        )
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
        for p in procs.values():
            if p.pid is not None:
                p.join()
        q.close()
