"""The evaluation run: dataset -> runner -> tool replay and scoring -> gates -> results and report."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kimi_student.data.dataset import dataset_fixture_dirs, read_dataset
from kimi_student.errors import InputError, KimiStudentError
from kimi_student.eval.gates import DEFAULT_GATES, evaluate_gate, evaluate_gates, load_gates, run_passed
from kimi_student.eval.parallel import (
    PartJob,
    has_rows,
    item_hash,
    locked_parts,
    next_attempt,
    parts_dir,
    read_parts,
    run_jobs,
    shard_of,
    worker_of,
)
from kimi_student.eval.runners.base import RunnerSpec
from kimi_student.eval.score.item import ItemScore, gate_counts, summarize
from kimi_student.fingerprint import code_version, sha256_file
from kimi_student.jsonl import read_jsonl, write_json, write_jsonl
from kimi_student.tokenizer import load_tokenizer
from kimi_student.tools.broker import fixtures_sha256
from kimi_student.tools.registry import tool_registry_sha256

REPORT_VERSION = "1"
FINGERPRINTS = (
    "model_fingerprint",
    "dataset_sha256",
    "tool_registry_sha256",
    "tokenizer_fingerprint",
    "prompt_wrapper_sha256",
    "fixtures_sha256",
    "code_version",
)


def created_at() -> str:
    """Now, or SOURCE_DATE_EPOCH when set, so that reruns can be byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    ts = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return ts.replace(microsecond=0).isoformat()


def fingerprint_problems(header: dict[str, Any], dataset_header: dict[str, Any]) -> list[str]:
    problems = [f"{k} is null or unknown" for k in FINGERPRINTS if header.get(k) in (None, "", "unknown")]
    if dataset_header.get("tool_registry_sha256") != header["tool_registry_sha256"]:
        problems.append("dataset was made with a different tool registry")
    if dataset_header.get("tokenizer_fingerprint") in (None, "", "unknown"):
        problems.append("dataset tokenizer_fingerprint is null (run `kimi-student contextual extract`)")
    elif dataset_header["tokenizer_fingerprint"] != header["tokenizer_fingerprint"]:
        problems.append("dataset was extracted with a different tokenizer")
    return problems


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` -> (i, n), 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise KimiStudentError(f"--shard takes i/n (e.g. 0/4), not {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise KimiStudentError(f"--shard {text}: needs 0 <= i < n")
    return i, n


def results_path(out: Path, report_path: Path) -> str:
    """Where the results are, seen from the report's folder: the same for the same --out/--report, on any
    machine or working directory."""
    return Path(os.path.relpath(out.resolve(), report_path.resolve().parent)).as_posix()


def report_header(facts: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    return {
        "report_version": REPORT_VERSION,
        "created_at": created_at(),
        "runner": facts["runner"],
        "proves": "scorer (gold text), not a model" if facts["runner"] == "verification_only" else "model",
        "model_fingerprint": facts["model_fingerprint"],
        "prompt_wrapper_sha256": facts["prompt_wrapper_sha256"],
        "decoding": facts["decoding"],
        **common,
    }


def build_report(
    header: dict[str, Any],
    rows: list[dict[str, Any]],
    problems: list[str],
    gates_cfg: dict[str, dict[str, Any]] | None,
    results: str,
) -> dict[str, Any]:
    """The report of `rows` (in dataset order). `gates_cfg` None: a shard's report, gates not applied."""
    summary = summarize([ItemScore.from_json(r) for r in rows])
    summary["fingerprint_problems"] = problems
    if gates_cfg is None:
        return {"header": header, "summary": summary, "gates": {}, "passed": None, "results_path": results}
    gates = evaluate_gates(summary, gate_counts(summary), gates_cfg)
    gates["fingerprints_complete"] = evaluate_gate(
        len(problems), 1, {"op": "==", "threshold": 0, "severity": "hard"}
    )
    return {
        "header": header,
        "summary": summary,
        "gates": gates,
        "passed": run_passed(gates),
        "results_path": results,
    }


def run_eval(
    dataset: str | Path,
    runner_name: str,
    out: str | Path,
    report_path: str | Path,
    predictions: str | None = None,
    tokenizer: str | None = None,
    fixtures: list[str] | None = None,
    gates_path: str | Path = DEFAULT_GATES,
    progress: bool = False,
    runner_options: dict[str, Any] | None = None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    fresh: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score every item (of `shard` (i, n) if given) with `workers` processes, write results JSONL and
    report JSON (each atomically), return the report.

    Rows go to part files under `<out>.parts/` as they are scored: run the same command again after a
    crash or a kill and only the missing items are scored (`fresh` discards them instead). The output is
    byte-identical whatever the number of workers, and `merge_shards` of all shards gives the bytes of
    the unsharded run.
    """
    dataset, out, report_path = Path(dataset), Path(out), Path(report_path)
    if workers < 1:
        raise KimiStudentError("--workers must be at least 1")
    dheader, items = read_dataset(dataset)
    gates_cfg = load_gates(gates_path)
    dataset_sha = sha256_file(dataset)
    tok_spec = tokenizer or dheader.get("tokenizer") or "smollm2"
    tok = load_tokenizer(tok_spec)
    fixture_dirs = [Path(f) for f in fixtures] if fixtures else dataset_fixture_dirs(dataset, dheader)
    options = dict(runner_options or {})
    spec = RunnerSpec(runner_name, dataset_sha, predictions, options)
    common = {
        "dataset_sha256": dataset_sha,
        "tool_registry_sha256": tool_registry_sha256(),
        "tokenizer_fingerprint": tok.fingerprint,
        "fixtures_sha256": fixtures_sha256(fixture_dirs),
        "seed": dheader.get("seed"),
        "code_version": code_version(),
    }
    n_shards = shard[1] if shard else 1
    hashes = [item_hash(it["id"]) for it in items]
    positions = [k for k, h in enumerate(hashes) if shard is None or shard_of(h, n_shards) == shard[0]]
    wanted = {items[k]["id"] for k in positions}
    identity = {
        **common,
        "runner": runner_name,
        "runner_options": options,
        "predictions_sha256": sha256_file(predictions)
        if predictions and Path(predictions).is_file()
        else None,
        "shard": list(shard) if shard else None,
    }

    folder = parts_dir(out)
    with locked_parts(folder, fresh):
        try:
            parts = read_parts(folder, identity, wanted)
            if parts.rows and log:
                log(f"resuming: {len(parts.rows)} of {len(positions)} items already scored in {folder}")
            todo: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
            for k in positions:
                if items[k]["id"] not in parts.rows:
                    todo[worker_of(hashes[k], n_shards, workers)].append(items[k])
            attempt, all_ids = next_attempt(folder), frozenset(it["id"] for it in items)
            jobs = [
                PartJob(
                    worker=w,
                    items=todo[w],
                    dataset_ids=all_ids,
                    spec=spec,
                    tokenizer=tok_spec,
                    fixture_dirs=[str(d) for d in fixture_dirs],
                    part=str(folder / f"a-{attempt:03d}-w{w:03d}.jsonl"),
                    identity=identity,
                    expect=parts.facts,
                )
                for w in range(workers)
                if todo[w] or (w == 0 and parts.facts is None)  # the runner's facts are needed once
            ]
            if jobs:
                bar = tqdm(total=len(positions), initial=len(parts.rows), disable=not progress, desc="eval")
                with bar:
                    run_jobs(jobs, bar.update)
                parts = read_parts(folder, identity, wanted)
        except BaseException:
            if not has_rows(folder):  # nothing to resume: leave nothing behind
                shutil.rmtree(folder, ignore_errors=True)
            raise
        assert parts.facts is not None and len(parts.rows) == len(positions), "a worker left items unscored"
        rows = [parts.rows[items[k]["id"]] for k in positions]
        header = report_header(parts.facts, common)
        problems = fingerprint_problems(header, dheader)
        if shard is None:
            report = build_report(header, rows, problems, gates_cfg, results_path(out, report_path))
            write_jsonl(out, rows)
        else:
            report = build_report(
                {**header, "shard": list(shard)}, rows, problems, None, results_path(out, report_path)
            )
            report["partial"] = f"shard {shard[0]}/{shard[1]}: gates are applied to the merged run"
            shard_header = {  # what merge needs: the run's header, and where this shard's rows go
                "__header__": True,
                "shard": list(shard),
                "items_total": len(items),
                "positions": positions,
                "fingerprint_problems": problems,
                **{k: v for k, v in header.items() if k != "created_at"},
            }
            write_jsonl(out, [shard_header, *rows])
        write_json(report_path, report)
        shutil.rmtree(folder)
    return report


# Header fields every shard of one run has in common (merge refuses shards that differ in any).
SHARD_AGREE = (
    "dataset_sha256",
    "items_total",
    "report_version",
    "runner",
    "model_fingerprint",
    "prompt_wrapper_sha256",
    "decoding",
    "tool_registry_sha256",
    "tokenizer_fingerprint",
    "fixtures_sha256",
    "seed",
    "code_version",
    "fingerprint_problems",
)


def _read_shard(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] | None = None
    rows = []
    for line, obj in read_jsonl(path):
        if header is None:
            if obj.get("__header__") is not True or "shard" not in obj:
                raise InputError(path, line, "shard", "not a shard's results (run eval with --shard i/n)")
            header = obj
            continue
        missing = [f for f in ("id", *(f.name for f in fields(ItemScore))) if f not in obj]
        if missing:
            raise InputError(path, line, missing[0], "missing field (not a result row)")
        rows.append(obj)
    if header is None:
        raise InputError(path, None, "shard", "empty file")
    if len(rows) != len(header["positions"]):
        raise InputError(
            path, None, "positions", f"{len(header['positions'])} positions for {len(rows)} rows"
        )
    return header, rows


def merge_shards(
    shard_results: list[str | Path],
    out: str | Path,
    report_path: str | Path,
    gates_path: str | Path = DEFAULT_GATES,
) -> dict[str, Any]:
    """Join the results of every shard of a run (`eval --shard i/n`) into the results and report that the
    unsharded run writes (byte for byte, with the same --out/--report and SOURCE_DATE_EPOCH)."""
    out, report_path = Path(out), Path(report_path)
    gates_cfg = load_gates(gates_path)
    shards = [(Path(p), *_read_shard(Path(p))) for p in shard_results]
    if not shards:
        raise KimiStudentError("eval merge needs the results file of every shard")
    first_path, first, _ = shards[0]
    n = first["shard"][1]
    by_index: dict[int, Path] = {}
    for path, h, _ in shards:
        if h["shard"][1] != n:
            raise InputError(
                path, 1, "shard", f"shard {h['shard'][0]}/{h['shard'][1]}, but {first_path} is of {n}"
            )
        if h["shard"][0] in by_index:
            raise InputError(
                path, 1, "shard", f"shard {h['shard'][0]}/{n} given twice (also {by_index[h['shard'][0]]})"
            )
        by_index[h["shard"][0]] = path
        for k in SHARD_AGREE:
            if h.get(k) != first.get(k):
                raise InputError(path, 1, k, f"differs from {first_path}'s: not a shard of the same run")
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        raise KimiStudentError(f"eval merge: missing shard(s) {', '.join(f'{i}/{n}' for i in missing)}")
    placed: dict[int, dict[str, Any]] = {}
    where: dict[str, Path] = {}
    for path, h, rows in shards:
        for pos, row in zip(h["positions"], rows):
            if row["id"] in where or pos in placed:
                raise InputError(
                    path, None, "id", f"item {row['id']!r} is also in {where.get(row['id'], path)}"
                )
            placed[pos], where[row["id"]] = row, path
    if sorted(placed) != list(range(first["items_total"])):
        raise KimiStudentError(
            f"eval merge: the shards hold {len(placed)} of the dataset's {first['items_total']} items"
        )
    rows = [placed[k] for k in range(first["items_total"])]
    header = {
        k: v
        for k, v in first.items()
        if k not in ("__header__", "shard", "items_total", "positions", "fingerprint_problems")
    }
    header["created_at"] = created_at()
    report = build_report(
        header, rows, first["fingerprint_problems"], gates_cfg, results_path(out, report_path)
    )
    write_jsonl(out, rows)
    write_json(report_path, report)
    return report
