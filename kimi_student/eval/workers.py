"""Scoring in worker processes (`--workers N`): each worker scores its share of the items with its own
runner, appends the rows to its own part file (resume.py) a chunk at a time, and sends the parent each
row's line of the results, sealed at its dataset position, so that the parent only orders the lines.

On Linux, while this process has not loaded torch, workers are forked: they start at once and share the
parent's dataset, tokenizer and fixtures (nothing pickled, nothing read twice). Elsewhere, or once torch
is loaded (its thread pools do not survive a fork), they are spawned and load their own."""

from __future__ import annotations

import ctypes
import fcntl
import gc
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimi_student.errors import KimiStudentError
from kimi_student.eval.identity import RunIdentity, RunInputs, RunnerFacts
from kimi_student.eval.resume import next_attempt, part_header, part_row_seal
from kimi_student.eval.rows import RowSeal
from kimi_student.eval.runners.base import RunnerSpec
from kimi_student.eval.runners.registry import make_runner
from kimi_student.eval.score.item import score_item, scrub_surrogates
from kimi_student.eval.score.tokens import encode_answers
from kimi_student.eval.stages import Stages
from kimi_student.outputs import room_for
from kimi_student.tokenizer import TokenizerHandle, load_tokenizer
from kimi_student.tools.broker import ToolBroker


@dataclass(frozen=True)
class RunSetup:
    """What every worker of a run needs besides its items (picklable, for spawned processes)."""

    spec: RunnerSpec
    inputs: RunInputs
    items_total: int  # the dataset's: with the inputs and the runner's facts, what a results row is sealed as
    dataset_ids: frozenset[str]  # all of them: a runner checks its outputs against the whole dataset
    tokenizer: str
    fixture_dirs: tuple[str, ...]
    key: dict[str, Any]  # the run's resume key, in each part's header
    expect: RunnerFacts | None  # the runner facts of the parts written earlier, if any


@dataclass
class ScoringTools:
    """What scoring needs besides the runner: the tokenizer and the fixtures' broker."""

    tok: TokenizerHandle
    broker: ToolBroker

    @classmethod
    def load(cls, setup: RunSetup) -> ScoringTools:
        return cls(load_tokenizer(setup.tokenizer), ToolBroker.from_folders(setup.fixture_dirs))


@dataclass
class PartJob:
    """One worker's items (and their dataset positions) and the part file it writes them to."""

    worker: int
    positions: list[int]
    items: list[dict[str, Any]]
    part: str  # the part file to create
    setup: RunSetup
    tools: ScoringTools | None = None  # loaded by the parent (in-process or forked), else by the worker
    parent_pid: int | None = None  # set for worker processes: they stop when the parent is gone
    threads: int | None = None  # worker processes: CPU threads each (torch, BLAS, tokenizers) unless set
    started: float | None = None  # time.time() when the parent started the worker


def part_jobs(
    setup: RunSetup, shares: list[list[int]], items: list[dict[str, Any]], folder: Path
) -> list[PartJob]:
    """A job per worker with items to score (`shares`: each worker's dataset positions); worker 0 also runs
    with none when no part has the runner's facts yet (the report needs them)."""
    attempt = next_attempt(folder)
    return [
        PartJob(w, share, [items[k] for k in share], str(folder / f"a-{attempt:03d}-w{w:03d}.jsonl"), setup)
        for w, share in enumerate(shares)
        if share or (w == 0 and setup.expect is None)
    ]


@dataclass
class Scored:
    """What this start's workers sent back: the runner's facts, each new row's results line by dataset
    position, and their stage timings."""

    progress: Callable[[int], None]
    facts: RunnerFacts | None = None
    lines: dict[int, str] = field(default_factory=dict)
    stages: list[str] = field(default_factory=list)

    def take(self, kind: str, value: Any) -> None:
        if kind == "facts":
            facts = RunnerFacts.from_json(value)
            if self.facts is not None and facts != self.facts:
                differ = ", ".join(facts.differences(self.facts))
                raise KimiStudentError(f"the eval workers built different models ({differ} differ)")
            self.facts = facts
        elif kind == "rows":
            positions, lines = value
            self.lines.update(zip(positions, lines))
            self.progress(len(lines))
        elif kind == "stages":
            self.stages.extend(value)


Send = Callable[[str, Any], None]


class Orphaned(Exception):
    pass


def result_row(item: dict[str, Any], out: Any, enc: Any, tok: Any, broker: ToolBroker) -> dict[str, Any]:
    """The scored row; the texts in it are written as UTF-8, so a lone surrogate becomes U+FFFD."""
    score = score_item(item, out.text, enc, tok, broker, out.error)
    score.over_context = out.finish == "context"
    row = {**score.to_json(), "output": scrub_surrogates(out.text)[0]}
    if out.turns is not None:
        turns = [
            {k: scrub_surrogates(v)[0] if isinstance(v, str) else v for k, v in m.items()} for m in out.turns
        ]
        row.update(turns=turns, finish=out.finish)
    return row


def score_part(job: PartJob, send: Send) -> None:
    """Build the runner (and the tokenizer and broker unless given), score the job's items a runner's chunk
    at a time; per chunk, append the part rows and send the results lines ("rows"), after the runner's
    facts ("facts"); last, the stage timings ("stages")."""
    s, stages = job.setup, Stages(f"w{job.worker}", job.started)
    if job.started is not None:
        stages.lap("start")
    tools = job.tools or ScoringTools.load(s)
    runner = make_runner(s.spec, s.inputs.dataset_sha256, tools.broker)
    try:
        runner.check_ids(s.dataset_ids)
        facts = RunnerFacts.of(runner)
        if s.expect is not None and facts != s.expect:
            raise KimiStudentError(
                f"{Path(job.part).parent} holds an unfinished run of another model "
                f"({', '.join(facts.differences(s.expect))} differ): rerun with --fresh to discard it"
            )
        send("facts", facts.to_json())
        part_seal = part_row_seal(s.key, facts)
        final_seal = RowSeal(RunIdentity(facts, s.inputs, s.items_total).row_identity())
        stages.lap("setup")
        with room_for(job.part), open(job.part, "x", encoding="utf-8") as fh:
            fh.write(part_header(s.key, job.worker, facts))
            fh.flush()
            outputs = runner.outputs(job.items)
            for lo in range(0, len(job.items), runner.chunk):
                chunk, places = job.items[lo : lo + runner.chunk], job.positions[lo : lo + runner.chunk]
                outs = [next(outputs) for _ in chunk]
                stages.lap("run")
                encs = encode_answers(tools.tok, [scrub_surrogates(o.text)[0] for o in outs])
                stages.lap("tokenize")
                rows = [result_row(*a, tools.tok, tools.broker) for a in zip(chunk, outs, encs)]
                stages.lap("score")
                lines = [part_seal.lines(row, final_seal, k) for row, k in zip(rows, places)]
                fh.write("".join(part + "\n" for part, _ in lines))
                fh.flush()
                send("rows", (places, [final for _, final in lines]))
                stages.lap("seal and write")
                if job.parent_pid is not None and os.getppid() != job.parent_pid:
                    raise Orphaned
    finally:
        runner.close()
    send("stages", stages.lines())


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
    gc.freeze()  # what it was given (a forked worker: the parent's whole heap) is never collected
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):  # before torch is imported
        os.environ.setdefault(var, str(job.threads))
    from tqdm import tqdm  # a thread lock for progress bars (model loading shows some): tqdm's default

    # multiprocessing lock, made in a spawned child, is reported as a leaked semaphore at exit
    tqdm.set_lock(threading.RLock())
    lock = os.open(Path(job.part).parent / "lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_SH)  # held until this process ends, orphaned or not
    try:
        score_part(job, lambda kind, value: q.put((kind, job.worker, value)))
        q.put(("done", job.worker, None))
    except Orphaned:
        os._exit(1)
    except KimiStudentError as e:
        q.put(("error", job.worker, str(e)))
    except BaseException:  # noqa: BLE001 - a crash: its traceback goes to the parent
        q.put(("crash", job.worker, f"eval worker {job.worker} crashed:\n{traceback.format_exc().rstrip()}"))


@contextmanager
def _frozen() -> Iterator[None]:
    """Everything alive now is left out of cyclic collections inside the block: the dataset and what was
    loaded with it stay alive anyway, and each full collection walking them costs a quarter of a second
    at 10k items. Not where a caller has frozen objects of its own (leaving would thaw them)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def start_method() -> str:
    """fork where it is safe and much cheaper (Linux, torch not loaded here), else spawn."""
    return "fork" if sys.platform.startswith("linux") and "torch" not in sys.modules else "spawn"


def run_jobs(jobs: list[PartJob], scored: Scored, stages: Stages | None = None) -> None:
    """Run each job in its own process; one job runs in this process. The first worker error (or death)
    stops the others and is raised here; their parts are kept."""
    method = "here" if len(jobs) == 1 else start_method()
    tools = ScoringTools.load(jobs[0].setup) if method in ("here", "fork") else None
    if stages is not None:
        stages.lap("load fixtures")
    if method == "here":
        jobs[0].tools = tools
        with _frozen():  # as in a forked worker
            score_part(jobs[0], scored.take)
        return
    ctx = mp.get_context(method)
    q = ctx.Queue()
    procs = {}
    for job in jobs:
        job.parent_pid, job.tools = os.getpid(), tools
        job.threads = max(1, (os.cpu_count() or 1) // len(jobs))  # the cores shared, not oversubscribed
        procs[job.worker] = ctx.Process(target=_worker_main, args=(job, q), name=f"kimi-eval-w{job.worker}")
    pending = set(procs)

    def handle(msg: tuple[str, int, Any]) -> None:
        kind, w, val = msg
        if kind == "done":
            pending.discard(w)
        elif kind == "error":  # bad input or usage, said in one line
            raise KimiStudentError(val)
        elif kind == "crash":
            raise KimiStudentError(f"{val}\n(items scored so far are kept: rerun the same command to resume)")
        else:
            scored.take(kind, val)

    try:
        sys.stdout.flush()  # else a forked worker writes what is buffered again
        sys.stderr.flush()
        with _frozen():  # a forked worker's collections skip the heap it shares with this process
            for job in jobs:
                job.started = time.time()
                procs[job.worker].start()
        _wait(procs, pending, q, handle)
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
        for p in procs.values():
            if p.pid is not None:
                p.join()
        q.close()


def _wait(procs: dict[int, Any], pending: set[int], q: Any, handle: Callable[[Any], None]) -> None:
    """Handle the workers' messages until each is done; a worker that died without saying so is an error."""
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
