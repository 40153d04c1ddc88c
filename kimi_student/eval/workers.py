"""Scoring in worker processes (`--workers N`): each worker builds its own runner, tokenizer and broker,
scores its share of the items and appends the rows to its own part file (resume.py), a chunk at a time."""

from __future__ import annotations

import ctypes
import fcntl
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_student.errors import KimiStudentError
from kimi_student.eval.identity import RunnerFacts
from kimi_student.eval.resume import next_attempt, part_header, part_line
from kimi_student.eval.runners.base import RunnerSpec
from kimi_student.eval.runners.registry import make_runner
from kimi_student.eval.score.item import score_item, scrub_surrogates
from kimi_student.eval.score.tokens import encode_answers
from kimi_student.outputs import room_for
from kimi_student.tokenizer import load_tokenizer
from kimi_student.tools.broker import ToolBroker


@dataclass(frozen=True)
class RunSetup:
    """What every worker of a run needs besides its items (picklable, for spawned processes)."""

    spec: RunnerSpec
    dataset_sha256: str
    dataset_ids: frozenset[str]  # all of them: a runner checks its outputs against the whole dataset
    tokenizer: str
    fixture_dirs: tuple[str, ...]
    key: dict[str, Any]  # the run's resume key, in each part's header
    expect: RunnerFacts | None  # the runner facts of the parts written earlier, if any


@dataclass
class PartJob:
    """One worker's items and the part file it writes them to."""

    worker: int
    items: list[dict[str, Any]]
    part: str  # the part file to create
    setup: RunSetup
    parent_pid: int | None = None  # set for spawned workers: they stop when the parent is gone
    threads: int | None = None  # spawned workers: CPU threads each (torch, BLAS, tokenizers) unless set


def part_jobs(setup: RunSetup, shares: list[list[dict[str, Any]]], folder: Path) -> list[PartJob]:
    """A job per worker with items to score; worker 0 also runs with none when no part has the runner's
    facts yet (the report needs them)."""
    attempt = next_attempt(folder)
    return [
        PartJob(w, items, str(folder / f"a-{attempt:03d}-w{w:03d}.jsonl"), setup)
        for w, items in enumerate(shares)
        if items or (w == 0 and setup.expect is None)
    ]


class Orphaned(Exception):
    pass


def result_row(item: dict[str, Any], out: Any, enc: Any, tok: Any, broker: ToolBroker) -> dict[str, Any]:
    """The scored row; the texts in it are written as UTF-8, so a lone surrogate becomes U+FFFD."""
    row = {
        **score_item(item, out.text, enc, tok, broker, out.error).to_json(),
        "output": scrub_surrogates(out.text)[0],
    }
    if out.turns is not None:
        turns = [
            {k: scrub_surrogates(v)[0] if isinstance(v, str) else v for k, v in m.items()} for m in out.turns
        ]
        row.update(turns=turns, finish=out.finish)
    return row


def score_part(job: PartJob, progress: Callable[[int], None]) -> None:
    """Build the runner, tokenizer and broker, score the job's items a runner's chunk at a time (progress
    and resume per chunk), append each chunk."""
    s = job.setup
    broker = ToolBroker.from_folders(s.fixture_dirs)
    runner = make_runner(s.spec, s.dataset_sha256, broker)
    try:
        runner.check_ids(s.dataset_ids)
        facts = RunnerFacts.of(runner)
        if s.expect is not None and facts != s.expect:
            raise KimiStudentError(
                f"{Path(job.part).parent} holds an unfinished run of another model "
                f"({', '.join(facts.differences(s.expect))} differ): rerun with --fresh to discard it"
            )
        tok = load_tokenizer(s.tokenizer)
        with room_for(job.part), open(job.part, "x", encoding="utf-8") as fh:
            fh.write(part_header(s.key, job.worker, facts))
            line = part_line(s.key, facts)
            fh.flush()
            outputs = runner.outputs(job.items)
            for lo in range(0, len(job.items), runner.chunk):
                chunk = job.items[lo : lo + runner.chunk]
                outs = [next(outputs) for _ in chunk]
                encs = encode_answers(tok, [scrub_surrogates(o.text)[0] for o in outs])
                fh.write("".join(line(result_row(*a, tok, broker)) for a in zip(chunk, outs, encs)))
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
