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
from typing import Any

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
    "hostile_scoring.py": (("--kb", "5", "--repeats", "1"), r"worst pattern: [\d.]+x the baseline"),
    "hf_decode.py": (
        ("--n", "2", "--layers", "2", "--max-new", "4", "--rounds", "1", "--batch-size", "2"),
        r"new fp32 .* tokens/s +x[\d.]+ vs baseline",
    ),
    "speculative.py": (
        ("--n", "2", "--max-new", "8", "--k", "2", "--runs", "2", "--draft", "prompt-lookup"),
        # every output exact; the predictions without and with the prefill's cost, the measured speed-up and the
        # lowest-highest single run's
        r"prompt-lookup +2 +(\d+)/\1 .* ([\d.]+)x +([\d.]+)x +([\d.]+)x +([\d.]+)-([\d.]+) ",
    ),
    "train_throughput.py": (("--steps", "2", "--prompts", "8"), r"\d +[\d.]+x +\d+"),
    "partial_finetune.py": (("--steps", "2", "--layers", "29"), r"top 29 of 30: +[\d.]+ tokens/s +[\d.]+x"),
}


@pytest.mark.parametrize("script", sorted(SMALL))
def test_a_bench_runs_on_a_small_input(script: str, tmp_path: Path) -> None:
    if script == "train_throughput.py":  # its baseline is TRL's trainer: `make bench-train` installs it
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"], check=True)
    m = _runs_to_its_end(script, SMALL[script][0], SMALL[script][1], tmp_path)
    if script == "speculative.py":  # a prefill dearer than one call pulls the prediction toward 1x
        pred, with_prefill = float(m[2]), float(m[3])
        assert min(pred, 1.0) <= with_prefill <= max(pred, 1.0), (pred, with_prefill)
        # two runs: the median's ratio (of the runs' mean times) lies between the two runs' own
        assert float(m[5]) <= float(m[4]) <= float(m[6]), m[0]


def _runs_to_its_end(script: str, args: Any, pattern: str, cwd: Path) -> re.Match[str]:
    """The bench as its make target runs it, to exit 0 and a result line matching `pattern` (returned)."""
    r = subprocess.run(
        [sys.executable, ROOT / "bench" / script, *map(str, args)],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    m = re.search(pattern, r.stdout)
    assert m, r.stdout[-2000:]
    return m


@pytest.fixture(scope="module")
def worker_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny worker-e2e run folder (test_worker_e2e's config) and its config: what bench/proc.py and
    bench/qat.py read."""
    from tests.integration.recipes.test_worker_e2e import tiny_config
    from tests.support import ks

    d = tmp_path_factory.mktemp("worker_run")
    cfg = tiny_config(d)
    r = ks("worker-e2e", "--out", d / "run", "--config", cfg)
    assert r.returncode in (0, 1), r.stderr[-2000:]  # the tiny student fails the gates; the run is whole
    return d / "run", cfg


@pytest.mark.parametrize("script", ["proc.py", "qat.py", "quant_damage.py"])
def test_a_bench_of_a_worker_run_runs_on_a_tiny_one(
    worker_run: tuple[Path, Path], script: str, tmp_path: Path
) -> None:
    run, cfg = worker_run
    args, pattern = {
        "proc.py": (
            ["--run", run, "--config", cfg, "--seeds", "2", "--steps", "2", "--heldout", "2"],
            r"(?m)^with .*\(n=2\)",  # mean ± spread over both seeds
        ),
        "qat.py": (
            [
                "--model",
                run / "run" / "final",
                "--config",
                cfg,
                "--size",
                "worker",
                "--items",
                "2",
                "--data",
                run / "data" / "train.jsonl",
                "--heldout",
                run / "data" / "heldout.jsonl",
                "--steps",
                "2",
                "--context",
                "256",
                "--arms",
                "fp16,int4_ptq,int4_qat,int4emb8_ptq,int4emb8_qat",  # int8's export: test_quant
                "--out",
                tmp_path / "qat",
            ],
            r"(?ms)^int4 integration_f1_lax: PTQ loses.*^int4emb8 integration_f1_lax: PTQ loses",
        ),  # fmt: skip
        "quant_damage.py": (
            [
                "--model",
                run / "run" / "final",
                "--data",
                run / "data" / "heldout.jsonl",
                "--items",
                "2",
                "--checkpoint",
                run / "teacher" / "final",
                "--threads",
                "1",
            ],
            r"(?m)^int4 everywhere \(PTQ\) +\d\.\d{5} +[01]\.\d{5}",
        ),  # fmt: skip
    }[script]
    _runs_to_its_end(script, args, pattern, tmp_path)


def test_the_packing_bench_runs_on_a_small_judge_set(tmp_path: Path) -> None:
    """bench/packing.py on a small Judge set with line drills: both orders print, fill order's padding is
    lower than the permutation's (a count, the same on every machine)."""
    from tests.support import ks

    r = ks("judge", "data", "--out", tmp_path, "--train", "40", "--heldout", "40", "--line-drills", "200")
    assert r.returncode in (0, 1), r.stderr[-2000:]  # a set this small fails its balance checks; it is whole
    m = _runs_to_its_end(
        "packing.py",
        ("--data", tmp_path / "train_audit_sft.jsonl", "--rows", "20"),
        r"(?s)permutation +padding (0\.\d+) .*fill order +padding (0\.\d+)",
        tmp_path,
    )
    assert float(m[2]) < float(m[1]), m[0]


def test_speculative_runs_0_measures_acceptance_without_timing(tmp_path: Path) -> None:
    """`--runs 0`: the warm-up pass only (exactness, alpha, tau, the predictions), no timed figure printed or
    reported, and the same alpha and tau as a timed run (they do not depend on timing)."""
    import json

    small = (
        "--n",
        "2",
        "--max-new",
        "8",
        "--k",
        "2",
        "--draft",
        "prompt-lookup",
        "--draft",
        "prompt-lookup:2",
    )
    bad = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "speculative.py"), *small, "--runs", "-1", "--report", "r.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--runs -1: 0 or more" in bad.stderr and not (tmp_path / "r.json").exists()
    row = r"prompt-lookup +2 +(\d+)/\1 +([\d.]+) +([\d.]+) +([\d.]+) .* ([\d.]+)x +([\d.]+)x +(\S+) +(\S+) "
    quick = _runs_to_its_end("speculative.py", (*small, "--runs", "0", "--report", "r.json"), row, tmp_path)
    assert quick[7] == quick[8] == "-", quick[0]
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    figures = summary["prompt-lookup K=2"]
    assert "measured_speedup" not in figures and figures["exact"] == 1.0
    assert figures["c"] == summary["prompt-lookup:2 K=2"]["c"]  # the target's calls timed once, for every arm
    timed = _runs_to_its_end("speculative.py", (*small, "--runs", "1"), row, tmp_path)
    assert quick.group(2, 3, 4) == timed.group(2, 3, 4)


def test_speculative_sampled_measures_against_target_only_sampling(tmp_path: Path) -> None:
    """`--temperature 1`: exactness is not checked (the draws differ: the rule is tested in
    tests/integration/eval/test_speculative.py), the report says the temperature; bad values exit 2."""
    import json

    for bad_args in (("--temperature", "-1"),):
        bad = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "speculative.py"), *bad_args, "--report", "r.json"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert bad.returncode == 2 and "--temperature" in bad.stderr and not (tmp_path / "r.json").exists()
    args = (
        "--n",
        "1",
        "--max-new",
        "8",
        "--k",
        "2",
        "--runs",
        "0",
        "--temperature",
        "1",
        "--draft",
        "prompt-lookup",
    )
    m = _runs_to_its_end(
        "speculative.py", (*args, "--report", "r.json"), r"prompt-lookup +2 +- +([\d.]+) ", tmp_path
    )
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    figures = summary["prompt-lookup K=2"]
    assert summary["temperature"] == 1.0 and float(m[1]) == round(figures["alpha"], 3), summary
    assert "exact" not in figures
    assert "target-only sampling at T = 1" in m.string and "measured_speedup" not in figures
