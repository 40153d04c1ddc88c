"""Shared fixtures: real generated datasets, extracted with real tokenizers, driven through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
KS = [sys.executable, "-m", "kimi_student"]


def ks(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `kimi-student` CLI in a subprocess."""
    return subprocess.run(
        [*KS, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# Reduced toy end-to-end run: fewer items and steps than kimi_student/configs/toy_e2e.yaml, same pipeline; ~40 s on two
# cores. Shared by the toy e2e tests and the runner tests (its student, tokenizer and Core ML package).
TOY_FAST = ("--items", "4000", "--steps", "200", "--shapes", "128", "--seed", "0")


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("toy") / "run"
    r = ks("toy-e2e", "--out", out, *TOY_FAST, env={"OPENBLAS_NUM_THREADS": "1"})
    return {"out": out, "rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 240-item dataset, generated and extracted with the embedded SmolLM2 tokenizer."""
    d = tmp_path_factory.mktemp("ctx")
    gen, final = d / "c.jsonl", d / "final.jsonl"
    for args in (
        ("contextual", "gen", "--n", 240, "--seed", 5, "--out", gen),
        ("contextual", "extract", "--in", gen, "--out", final, "--tokenizer", "smollm2"),
    ):
        r = ks(*args)
        assert r.returncode == 0, r.stderr
    return {"dir": d, "gen": gen, "final": final}


@pytest.fixture(scope="session")
def toy_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random toy student (SmolLM2 tokenizer) saved as an HF folder."""
    from kimi_student.backends.embedded import smollm2_folder
    from kimi_student.models.student import build_student, load_spec, save_checkpoint

    out = tmp_path_factory.mktemp("ckpt") / "toy"
    return save_checkpoint(build_student(load_spec("worker", "toy"), seed=0), smollm2_folder(), out)
