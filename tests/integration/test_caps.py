"""Resource caps (review reliability.md D16): a request past what the machine or the model can hold is a
usage error with exit 2, before any work (these ran for minutes or were killed for memory)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kimi_student.cli.common import cpu_cores
from tests.support import ks, ks_here


def test_contextual_gen_n_has_a_maximum(tmp_path: Path) -> None:
    t = time.monotonic()
    r = ks("contextual", "gen", "--n", "99999999999999999999", "--out", tmp_path / "c.jsonl")
    assert r.returncode == 2, r.stderr
    assert (
        r.stderr
        == "error: --n 99999999999999999999: at most 10,000,000 items (a dataset is built in memory)\n"
    )
    assert time.monotonic() - t < 30 and not list(tmp_path.iterdir())
    assert "at most 10,000,000" in ks("contextual", "gen", "--help", env={"COLUMNS": "200"}).stdout
    r = ks_here("contextual", "gen", "--n", 10_000_001, "--out", tmp_path / "c.jsonl")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Usage" not in r.stderr, r.stderr


def test_eval_workers_above_the_cores_is_refused(dataset: dict[str, Path], tmp_path: Path) -> None:
    out, rep = tmp_path / "o.jsonl", tmp_path / "r.json"
    cores = cpu_cores()
    n = max(cores, 2) + 1
    r = ks("eval", "--runner", "verification_only", "--in", dataset["final"], "--out", out, "--report", rep,
           "--workers", n)  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == (
        f"error: --workers {n}: this machine has {cores} CPU cores; use at most {n - 1} (workers beyond the "
        "cores only slow the run down)"
    )
    assert not list(tmp_path.iterdir())


def test_one_core_still_takes_two_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`--workers 2` (the README's and the tests' own) runs on a one-core machine: two processes share a
    core at little cost; it is many that thrash (64 on 2 cores ran 30x slower than one)."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    args = ("eval", "--runner", "verification_only", "--in", tmp_path / "absent.jsonl", "--workers")
    r = ks_here(*args, 2)
    assert r.returncode == 2 and "absent.jsonl" in r.stderr and "--workers" not in r.stderr, r.stderr
    r = ks_here(*args, 3)
    assert "error: --workers 3: this machine has 1 CPU cores; use at most 2" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--shapes", "100000000"), "shape 100000000 exceeds the checkpoint's max_position_embeddings 1024"),
        (("--shapes", "64", "--context", "100000000"), "shape 100000000 exceeds the checkpoint's"),
        (("--shapes", ",".join(str(8 * k) for k in range(1, 18))), "--shapes: 17 lengths, at most 16"),
    ],
)
def test_export_shapes_beyond_the_model_are_refused_before_work(
    args: tuple[str, ...], expected: str, toy_checkpoint: Path, tmp_path: Path
) -> None:
    t = time.monotonic()
    # in this process: test_export's test_export_rejects_shape_beyond_the_checkpoint runs one in its own
    r = ks_here("export", "pytorch", "--model", toy_checkpoint, "--out", tmp_path / "out", *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert expected in r.stderr, r.stderr
    assert time.monotonic() - t < 60 and not (tmp_path / "out").exists()
