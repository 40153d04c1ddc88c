"""Shared fixtures: real generated datasets, extracted with real tokenizers, driven through the real CLI.

`make test` runs on three xdist workers on two cores (a worker waiting on a process, a server or a lock leaves
its core to another: 355 s against ~375 s with two) with `--dist loadfile`: a module's tests share one worker, so its
module fixtures (conversions, checkpoints, servers) are built once; the toy run, needed by two modules, is
built once per session through a lock (`shared_once`). The heaviest files are collected first (`HEAVY_FIRST`)."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# Bytecode caches are written (Python's default, which PYTHONDONTWRITEBYTECODE turns off): without them each
# of the suite's CLI processes compiled kimi_student again (~0.5 s a process on 2 cores), and on a venv
# installed with --no-compile (make install) torch and transformers too (seconds a process).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share two cores: one OpenMP thread each (and in every CLI subprocess, which inherits it).
    # Two threads a worker wait at every op's barrier for a core the other worker holds (train/threads.py).
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from kimi_student.integrity import ENV  # noqa: E402
from tests.support import ROOT, TOY_FAST, ks  # noqa: E402

# The files that take longest under `make test`, heaviest first (worker-seconds on two cores). xdist hands
# out whole files (`--dist loadfile`) in collection order when `--no-loadscope-reorder` is given (make test
# gives it; its default order, most tests first, left these few-test files for the end, one worker running
# them alone while the other had finished): longest first keeps both workers busy to the end. The runner
# tests come first because they build the shared toy run (`toy_run`) that the toy e2e tests read later.
HEAVY_FIRST = (
    "tests/integration/eval/test_runners.py",
    "tests/integration/export/test_export.py",
    "tests/integration/data/test_kd_mix.py",
    "tests/integration/train/test_train.py",
    "tests/integration/test_kill_anywhere.py",
    "tests/integration/train/test_untrusted_run.py",
    "tests/integration/eval/test_eval_scale.py",
    "tests/integration/recipes/test_toy_e2e.py",
    "tests/integration/arbiter/test_judge_pipeline.py",
    "tests/integration/test_dashboard.py",
    "tests/integration/test_docs_run.py",
    "tests/integration/test_workflows.py",
    "tests/integration/export/mil/test_decoders.py",
    "tests/integration/eval/test_sealed_rows.py",
    "tests/integration/export/mil/test_compressed_weights.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Collect the `HEAVY_FIRST` files first, in that order; the rest keep their order."""
    missing = [f for f in HEAVY_FIRST if not (ROOT / f).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py: HEAVY_FIRST names missing files: {missing}")
    rank = {f: i for i, f in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session", autouse=True)
def private_run_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test seals (eval rows, checkpoints) with a run key of its session's own, in a temp config
    folder, never the developer's ~/.config/kimi-student/run.key; subprocesses inherit it."""
    saved = {k: os.environ.get(k) for k in (ENV, "XDG_CONFIG_HOME")}
    os.environ.pop(ENV, None)
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def shared_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], dict]) -> dict:
    """`build(folder)` once per test session, even with `-n 3`: the xdist workers share their parent temp
    folder, and the first one to take the lock builds while the other waits, then both read the result."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = root / f"shared-{name}", root / f"shared-{name}.json"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            done.write_text(json.dumps(build(folder)))
    return json.loads(done.read_text())


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reduced toy run (TOY_FAST), trained once per session and read by the toy and runner tests."""

    def build(folder: Path) -> dict:
        r = ks("toy-e2e", "--out", folder / "run", *TOY_FAST, env={"OPENBLAS_NUM_THREADS": "1"})
        return {"out": str(folder / "run"), "rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}

    run = shared_once(tmp_path_factory, "toy", build)
    return {**run, "out": Path(run["out"])}


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-item generated dataset (seed 3) with its fixtures, for tests of what commands write."""
    d = tmp_path_factory.mktemp("small")
    r = ks("contextual", "gen", "--n", 30, "--seed", 3, "--out", d / "c.jsonl")
    assert r.returncode == 0, r.stderr
    return d / "c.jsonl"


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 240-item dataset, generated and extracted with the embedded SmolLM2 tokenizer, once per session
    (`shared_once`; tests read it, or write beside it under names of their own)."""

    def build(d: Path) -> dict:
        d.mkdir(parents=True, exist_ok=True)
        gen, final = d / "c.jsonl", d / "final.jsonl"
        for args in (
            ("contextual", "gen", "--n", 240, "--seed", 5, "--out", gen),
            ("contextual", "extract", "--in", gen, "--out", final, "--tokenizer", "smollm2"),
        ):
            r = ks(*args)
            assert r.returncode == 0, r.stderr
        return {"dir": str(d), "gen": str(gen), "final": str(final)}

    return {k: Path(v) for k, v in shared_once(tmp_path_factory, "dataset", build).items()}


@pytest.fixture(scope="session")
def toy_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random toy student (SmolLM2 tokenizer) saved as an HF folder."""
    from kimi_student.backends.embedded import smollm2_folder
    from kimi_student.models.student import build_student, load_spec, save_checkpoint

    out = tmp_path_factory.mktemp("ckpt") / "toy"
    return save_checkpoint(build_student(load_spec("worker", "toy"), seed=0), smollm2_folder(), out)


_TIMELINE = os.environ.get(
    "KS_TEST_TIMELINE"
)  # a folder: each worker writes when each test ran (budget work)


def _cpu_seconds() -> float:
    """CPU time of this worker and of the processes it has waited for: what a test costs on shared cores
    (its wall time also counts waiting on a fixture another worker builds)."""
    import resource

    return sum(
        u.ru_utime + u.ru_stime
        for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


_CPU = [0.0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _TIMELINE and report.when in ("setup", "call", "teardown"):
        import time

        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        cpu, _CPU[0] = _CPU[0], _cpu_seconds()
        with open(Path(_TIMELINE) / f"{worker}.jsonl", "a") as f:
            row = [report.nodeid, report.when, round(time.time() - report.duration, 2), report.duration]
            f.write(json.dumps([*row, round(_CPU[0] - cpu, 3) if cpu else None]) + "\n")
