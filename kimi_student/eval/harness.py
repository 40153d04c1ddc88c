"""The evaluation run: dataset -> runner -> tool replay and scoring -> gates -> results and report."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kimi_student.data.dataset import dataset_fixture_dirs, read_dataset
from kimi_student.errors import KimiStudentError
from kimi_student.eval import stages as timing
from kimi_student.eval.gates import DEFAULT_GATES, load_gates
from kimi_student.eval.identity import RunIdentity, RunInputs, RunnerFacts
from kimi_student.eval.report import EvalPaths, fingerprint_problems, write_run
from kimi_student.eval.resume import Parts, kept_if_resumable, locked_parts, parts_dir, read_parts
from kimi_student.eval.rows import RowSeal, key_id
from kimi_student.eval.runners.base import RunnerSpec, transient
from kimi_student.eval.shards import item_hash, shard_positions, worker_shares, write_shard
from kimi_student.eval.workers import RunSetup, Scored, part_jobs, run_jobs
from kimi_student.fingerprint import canonical_json
from kimi_student.jsonl import gc_paused
from kimi_student.tokenizer import load_tokenizer


def run_eval(
    dataset: str | Path,
    runner: RunnerSpec,
    out: EvalPaths,
    *,
    tokenizer: str | None = None,
    fixtures: list[str] | None = None,
    gates: str | Path = DEFAULT_GATES,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    fresh: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score every item (of `shard` (i, n) if given) with `workers` processes, write results JSONL and
    report JSON (together or not at all), return the report. `tokenizer` and `fixtures` default to the
    dataset's.

    Rows go to part files under `<results>.parts/` as they are scored: run the same command again after a
    crash or a kill and only the missing items are scored (`fresh` discards them instead). The output is
    byte-identical whatever the number of workers, and `merge_shards` of all shards gives the bytes of
    the unsharded run.
    """
    dataset = Path(dataset)
    if workers < 1:
        raise KimiStudentError("--workers must be at least 1")
    stages = timing.Stages("main")
    with gc_paused():  # all of it stays alive: a collection would walk the dataset for nothing
        dheader, items = read_dataset(dataset)
        gates_cfg = load_gates(gates)
        key_id()  # rows are sealed with the run key: a bad one stops the run here, before anything is written
        stages.lap("read dataset")
        tok_spec = tokenizer or dheader.get("tokenizer") or "smollm2"
        fixture_dirs = [Path(f) for f in fixtures] if fixtures else dataset_fixture_dirs(dataset, dheader)
        tok = load_tokenizer(tok_spec)
        stages.lap("load tokenizer")
        inputs = RunInputs.of(dataset, dheader, tok, fixture_dirs)
        hashes = [item_hash(it["id"]) for it in items]
        positions = shard_positions(hashes, shard)
        wanted, key = {items[k]["id"] for k in positions}, inputs.resume_key(runner, shard)
        stages.lap("fingerprints")
    folder = parts_dir(out.results)
    with locked_parts(folder, fresh) as made:
        with kept_if_resumable(folder, made):
            parts = read_parts(folder, key, wanted)
            if parts.settled and log:
                log(f"resuming: {len(parts.settled)} of {len(positions)} items already scored in {folder}")
            stages.lap("read parts")
            ids, dirs = frozenset(it["id"] for it in items), tuple(str(d) for d in fixture_dirs)
            setup = RunSetup(runner, inputs, len(items), ids, tok_spec, dirs, key, parts.facts)
            shares = worker_shares(items, hashes, positions, shard, workers, parts.settled)
            jobs = part_jobs(setup, shares, items, folder)
            with tqdm(
                total=len(positions), initial=len(parts.settled), disable=not progress, desc="eval"
            ) as bar:
                scored = Scored(bar.update)
                if jobs:
                    run_jobs(jobs, scored, stages)
            stages.lap("score (workers)")
        with gc_paused():
            facts, rows, lines = _results(items, positions, parts, scored, inputs, folder)
            identity = RunIdentity(facts, inputs, len(items))
            problems = fingerprint_problems(identity.header(), dheader)
            stages.lap("rows in order")
            if shard is None:
                report = write_run(identity.header(), rows, lines, problems, gates_cfg, out)
            else:
                report = write_shard(identity, shard, positions, rows, lines, problems, out)
            stages.lap("report and write")
        shutil.rmtree(folder)
    if timing.wanted():
        for line in stages.lines() + scored.stages:
            (log or (lambda m: print(m, file=sys.stderr)))(line)
    return report


def _results(
    items: list[dict[str, Any]],
    positions: list[int],
    parts: Parts,
    scored: Scored,
    inputs: RunInputs,
    folder: Path,
) -> tuple[RunnerFacts, list[dict[str, Any]], list[str]]:
    """The runner's facts, and the results rows and lines in dataset order: the line a worker sent, or a
    row kept from an earlier start sealed here at its position. An item asked again because its model
    could not be reached keeps its first row when it could not be reached again either."""
    facts = parts.facts or scored.facts
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    final: RowSeal | None = None
    for k in positions:
        line, old = scored.lines.get(k), parts.rows.get(items[k]["id"])
        if line is not None:
            row = json.loads(line)
            if old is None or not transient(row):
                rows.append(row)
                lines.append(line)
                continue
        if old is None or facts is None:
            continue
        final = final or RowSeal(RunIdentity(facts, inputs, len(items)).row_identity())
        rows.append(final.sealed(old, k))
        lines.append(canonical_json(rows[-1]))
    if facts is None or len(rows) != len(positions):
        raise KimiStudentError(
            f"{folder}: the workers left {len(positions) - len(rows)} items unscored: rerun the "
            "same command to score them"
        )
    return facts, rows, lines
