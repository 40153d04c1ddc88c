"""The evaluation run: dataset -> runner -> tool replay and scoring -> gates -> results and report."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kimi_student.data.dataset import dataset_fixture_dirs, read_dataset
from kimi_student.errors import KimiStudentError
from kimi_student.eval.gates import DEFAULT_GATES, load_gates
from kimi_student.eval.identity import RunIdentity, RunInputs
from kimi_student.eval.report import EvalPaths, fingerprint_problems, write_run
from kimi_student.eval.resume import kept_if_resumable, locked_parts, parts_dir, read_parts
from kimi_student.eval.rows import RowSeal, key_id
from kimi_student.eval.runners.base import RunnerSpec
from kimi_student.eval.shards import item_hash, shard_positions, worker_shares, write_shard
from kimi_student.eval.workers import RunSetup, part_jobs, run_jobs
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
    report JSON (each atomically), return the report. `tokenizer` and `fixtures` default to the dataset's.

    Rows go to part files under `<results>.parts/` as they are scored: run the same command again after a
    crash or a kill and only the missing items are scored (`fresh` discards them instead). The output is
    byte-identical whatever the number of workers, and `merge_shards` of all shards gives the bytes of
    the unsharded run.
    """
    dataset = Path(dataset)
    if workers < 1:
        raise KimiStudentError("--workers must be at least 1")
    dheader, items = read_dataset(dataset)
    gates_cfg = load_gates(gates)
    key_id()  # rows are sealed with the run key: a bad one stops the run here, before anything is written
    tok_spec = tokenizer or dheader.get("tokenizer") or "smollm2"
    fixture_dirs = [Path(f) for f in fixtures] if fixtures else dataset_fixture_dirs(dataset, dheader)
    inputs = RunInputs.of(dataset, dheader, load_tokenizer(tok_spec), fixture_dirs)
    hashes = [item_hash(it["id"]) for it in items]
    positions = shard_positions(hashes, shard)
    wanted, key = {items[k]["id"] for k in positions}, inputs.resume_key(runner, shard)
    folder = parts_dir(out.results)
    with locked_parts(folder, fresh):
        with kept_if_resumable(folder):
            parts = read_parts(folder, key, wanted)
            if parts.settled and log:
                log(f"resuming: {len(parts.settled)} of {len(positions)} items already scored in {folder}")
            ids, dirs = frozenset(it["id"] for it in items), tuple(str(d) for d in fixture_dirs)
            setup = RunSetup(runner, inputs.dataset_sha256, ids, tok_spec, dirs, key, parts.facts)
            jobs = part_jobs(
                setup, worker_shares(items, hashes, positions, shard, workers, parts.settled), folder
            )
            if jobs:
                with tqdm(
                    total=len(positions), initial=len(parts.settled), disable=not progress, desc="eval"
                ) as bar:
                    run_jobs(jobs, bar.update)
                parts = read_parts(folder, key, wanted)
        if parts.facts is None or len(parts.rows) != len(positions):
            raise KimiStudentError(
                f"{folder}: the workers left {len(positions) - len(parts.rows)} items unscored: rerun the "
                "same command to score them"
            )
        identity = RunIdentity(parts.facts, inputs, len(items))
        rowseal = RowSeal(identity.row_identity())
        rows = [rowseal.sealed(parts.rows[items[k]["id"]], k) for k in positions]
        problems = fingerprint_problems(identity.header(), dheader)
        if shard is None:
            report = write_run(identity.header(), rows, problems, gates_cfg, out)
        else:
            report = write_shard(identity, shard, positions, rows, problems, out)
        shutil.rmtree(folder)
    return report
