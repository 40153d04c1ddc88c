"""Each bench that a doc shows still runs, on a small input: the same script its `make bench-*` target runs,
to its end, printing its ratio. The figures mean nothing at this size; a bench whose code rotted fails here
rather than in the hands of whoever measures next. Marked `extra` (make test-slow): minutes of training and
decoding that prove no behaviour make test does not."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.extra]

# script -> (arguments that make it small, what its result line looks like). Each bench's own defaults are
# the measured sizes; each prints its figure against a baseline of the same run.
SMALL: dict[str, tuple[tuple[str, ...], str]] = {
    "contextual_scale.py": (("--n", "200"), r"verify .* items/s +[\d.]+x I/O floor"),
    "data_speed.py": (("--n", "100", "--repeats", "1"), r"(?m)^gen +[\d.]+ +[\d.]+ +[\d.]+x"),
    "eval_scale.py": (("--n", "200"), r"speed-up with 2 workers: [\d.]+x"),
    "distill_quality.py": (
        ("--train", "8", "--heldout", "4", "--steps", "4", "--max-new-tokens", "8"),
        r"(?m)^kd +[\d.]+ +[\d.]+$",
    ),
    "hf_decode.py": (
        ("--n", "2", "--layers", "2", "--max-new", "4", "--rounds", "1", "--batch-size", "2"),
        r"new fp32 .* tokens/s +x[\d.]+ vs baseline",
    ),
    "speculative.py": (
        ("--n", "2", "--max-new", "8", "--k", "2", "--runs", "1", "--draft", "prompt-lookup"),
        r"prompt-lookup +2 +(\d+)/\1 ",  # every output exact
    ),
    "train_throughput.py": (("--steps", "2", "--prompts", "8"), r"\d +[\d.]+x +\d+"),
}


@pytest.mark.parametrize("script", sorted(SMALL))
def test_a_bench_runs_on_a_small_input(script: str, tmp_path: Path) -> None:
    if script == "train_throughput.py":  # its baseline is TRL's trainer: `make bench-train` installs it
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"], check=True)
    r = subprocess.run(
        [sys.executable, ROOT / "bench" / script, *SMALL[script][0]],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert re.search(SMALL[script][1], r.stdout), r.stdout[-2000:]
