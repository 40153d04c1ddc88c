"""Shared fixtures: real generated datasets, extracted with real tokenizers, driven through the real CLI.

Session fixtures are built once per pytest process (with `-n 2`, once per worker): tests that need the toy
run share one xdist group, so it is trained once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.support import TOY_FAST, ks  # noqa: E402


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
