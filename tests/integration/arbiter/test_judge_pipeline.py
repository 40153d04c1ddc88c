"""The Judge end to end on small inputs: `judge data` -> `train --config judge` (a few steps of the toy Judge)
-> `judge eval`: the report's figures are recomputed from its own results file, a padded prompt is the stored
case re-rendered, the gates are applied (and fail: a few steps teach little), the exit code says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kimi_student.arbiter.judge_scores import score_pairs, score_singles
from tests.support import ks, ks_here


@pytest.fixture(scope="module")
def judge_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("judge")
    data = root / "data"
    r = ks_here("judge", "data", "--out", data, "--train", "40", "--heldout", "12", "--seed", "2")
    assert r.returncode == 1 and "heldout_size" in r.stdout  # too small to gate on; the files are whole
    r = ks(
        "train",
        "--config",
        "judge",
        "--size",
        "toy",
        "--data",
        data / "train_sft.jsonl",
        "--out",
        root / "run",
        "--max-steps",
        "6",
        "--precision",
        "no",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return data, root / "run" / "final"


def test_judge_eval_reports_what_its_results_say(judge_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, model = judge_run
    report = tmp_path / "caws_eval.json"
    r = ks(
        "judge",
        "eval",
        "--model",
        model,
        "--data",
        data / "heldout.jsonl",
        "--report",
        report,
        "--limit",
        "4",
        "--batch-size",
        "4",
        "--max-new-tokens",
        "24",
    )
    assert r.returncode == 1, r.stderr[-2000:]  # gates fail (and are inconclusive under min_items)
    rep = json.loads(report.read_text())
    rows = [json.loads(line) for line in report.with_suffix(".results.jsonl").read_text().splitlines()]
    singles = [x for x in rows if "padded_output" in x]
    pairs = [x for x in rows if "padded_output" not in x]
    assert (
        (len(singles), len(pairs)) == (4, 8) == (rep["header"]["single_cases"], rep["header"]["pair_records"])
    )
    again = score_singles(
        [x["label"] for x in singles],
        [x["output"] for x in singles],
        [x["status_probabilities"] for x in singles],
    )
    assert again == rep["singles"]
    assert score_pairs(pairs, [x["output"] for x in pairs]) == rep["pairs"]
    for x in singles:
        p = x["status_probabilities"]
        assert set(p) == {"PASS", "FAIL", "WAIVER_REQUIRED"} and abs(sum(p.values()) - 1) < 1e-5
    assert rep["passed"] is False and {g["status"] for g in rep["gates"].values()} <= {
        "fail",
        "inconclusive",
        "pass",
    }
    assert rep["gates"]["agreement"]["status"] == "inconclusive"  # 4 cases < min_items 600
    assert rep["header"]["model_fingerprint"] and len(rep["header"]["dataset_sha256"]) == 64
    assert "agreement" in r.stdout and "FAILED" in r.stdout


def test_judge_eval_refuses_a_set_that_is_not_a_judge_set(
    judge_run: tuple[Path, Path], tmp_path: Path
) -> None:
    _, model = judge_run
    bad = tmp_path / "x.jsonl"
    bad.write_text(
        '{"__header__": true, "dataset_version": "contextual-3"}\n{"id": "a", "prompt": "p", "mode": "single"}\n'
    )
    r = ks_here("judge", "eval", "--model", model, "--data", bad, "--report", tmp_path / "r.json")
    assert r.returncode == 2 and "dataset_version" in r.stderr and not (tmp_path / "r.json").exists()
