"""`kimi-student judge data` end to end: a set big enough to gate on passes every check and says so; a set
too small to gate on exits 1 and names the check; the files are whole JSONL with a header."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kimi_student.arbiter.judge_data import boundary_case, drill
from kimi_student.arbiter.line_drills import line_drill, path_drill
from tests.support import ks_here


def test_a_gateable_set_passes_its_checks(tmp_path: Path) -> None:
    r = ks_here("judge", "data", "--out", tmp_path, "--train", "300", "--heldout", "600", "--seed", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert all(stats["checks"].values()) and len(stats["checks"]) == 11
    assert stats["baselines"]["length"]["pairwise_accuracy"] <= 0.60
    assert stats["baselines"]["bag_of_words"]["pairwise_accuracy"] <= 0.60
    assert "checks: all pass" in r.stdout
    held = [json.loads(line) for line in (tmp_path / "heldout.jsonl").read_text().splitlines()]
    assert held[0]["__header__"] and held[0]["single_cases"] == 600 and held[0]["pairs"] == 300
    assert len(held) == 1 + 600 + 600
    assert sum(r["mode"] == "single" for r in held[1:]) == 600


def test_a_set_too_small_to_gate_on_exits_1_and_names_the_check(tmp_path: Path) -> None:
    r = ks_here("judge", "data", "--out", tmp_path, "--train", "10", "--heldout", "10")
    assert r.returncode == 1
    assert "FAILED" in r.stdout and "heldout_size" in r.stdout
    assert json.loads((tmp_path / "stats.json").read_text())["checks"]["heldout_size"] is False
    r = ks_here("judge", "data", "--out", tmp_path / "x", "--train", "1", "--heldout", "10")
    assert r.returncode == 2 and "at least 2" in r.stderr + r.stdout
    r = ks_here("judge", "data", "--out", tmp_path / "y", "--ask", "lines")
    assert r.returncode == 2 and "--ask" in r.stderr + r.stdout and not (tmp_path / "y").exists()


def test_train_pairs_sets_the_training_pairs_alone(tmp_path: Path) -> None:
    """--train-pairs 30: the first 30 of the pairs the default (half of --train) draws, both orders; the
    single cases and the held-out split as the default writes them."""
    split = {}
    for name, more in (("default", ()), ("fewer", ("--train-pairs", "30"))):
        r = ks_here("judge", "data", "--out", tmp_path / name, "--train", "100", "--heldout", "20", *more)
        assert r.returncode == 1 and "heldout_size" in r.stdout  # too small to gate on; the files are whole
        split[name] = [json.loads(x) for x in (tmp_path / name / "train.jsonl").read_text().splitlines()]
        assert (tmp_path / name / "heldout.jsonl").read_bytes() == (
            tmp_path / "default" / "heldout.jsonl"
        ).read_bytes()
    default, fewer = split["default"], split["fewer"]
    assert (default[0]["pairs"], fewer[0]["pairs"]) == (50, 30)
    pairs = [r for r in fewer[1:] if r["mode"] == "pair"]
    assert len(pairs) == 60 and pairs == [r for r in default[1:] if r["mode"] == "pair"][:60]
    assert [r for r in fewer[1:] if r["mode"] == "single"] == [
        r for r in default[1:] if r["mode"] == "single"
    ]
    audit = (tmp_path / "fewer" / "train_audit_sft.jsonl").read_text().splitlines()
    assert len(audit) == 1 + 100 + 60 and json.loads(audit[0])["pairs"] == 30


def test_drills_join_the_training_audit_set_alone(tmp_path: Path) -> None:
    """--drills 25 --line-drills 30 --path-drills 10 --boundary-cases 5: 25 drill rows, 30 line drills, 10 path
    drills, 5 boundary cases, after the records of train_audit_sft.jsonl, its header says so; every other file
    as without drills. --train-pairs 0: no training pairs, and no winner shares to fail on."""
    for name, more in (
        ("plain", ()),
        (
            "drilled",
            ("--drills", "25", "--line-drills", "30", "--path-drills", "10", "--boundary-cases", "5"),
        ),
    ):
        args = ("--out", tmp_path / name, "--train", "40", "--heldout", "10", "--train-pairs", "0", *more)
        r = ks_here("judge", "data", *args)
        assert r.returncode == 1 and "heldout_size" in r.stdout, r.stderr[-2000:]
        stats = json.loads((tmp_path / name / "stats.json").read_text())
        assert stats["train"]["pairs"] == 0 and stats["checks"]["train_winner_shares"] is True
    plain, drilled = tmp_path / "plain", tmp_path / "drilled"
    for f in sorted(plain.iterdir()):
        if f.name != "train_audit_sft.jsonl":
            assert f.read_bytes() == (drilled / f.name).read_bytes(), f.name
    before = [json.loads(x) for x in (plain / "train_audit_sft.jsonl").read_text().splitlines()]
    after = [json.loads(x) for x in (drilled / "train_audit_sft.jsonl").read_text().splitlines()]
    assert after[0] == {**before[0], "drills": 25, "line_drills": 30, "path_drills": 10, "boundary_cases": 5}
    assert after[1:41] == before[1:] and len(after) == 1 + 40 + 25 + 30 + 10 + 5
    assert after[41:66] == [drill(0, i) for i in range(25)]
    assert after[66:96] == [line_drill(0, i) for i in range(30)]
    assert after[96:106] == [path_drill(0, i) for i in range(10)]
    assert after[106:] == [boundary_case(0, i) for i in range(5)]


def test_train_wordings_narrows_the_training_split_alone(tmp_path: Path) -> None:
    """--train-wordings 8: the training split in eight training wordings, not the default's first four (the
    sets of stops 40-49); its header says so; the held-out split as the default writes it, byte for byte."""
    rows = {}
    for name, more in (("default", ()), ("eight", ("--train-wordings", "8"))):
        r = ks_here("judge", "data", "--out", tmp_path / name, "--train", "40", "--heldout", "10", *more)
        assert r.returncode == 1 and "heldout_size" in r.stdout, r.stderr[-2000:]
        rows[name] = [json.loads(x) for x in (tmp_path / name / "train.jsonl").read_text().splitlines()]
    assert (tmp_path / "eight/heldout.jsonl").read_bytes() == (
        tmp_path / "default/heldout.jsonl"
    ).read_bytes()
    assert (rows["default"][0]["train_wordings"], rows["eight"][0]["train_wordings"]) == (4, 8)
    digits = {
        name: {int(d) for r in rs[1:] for d in re.findall(r"\d+", r["wording"])} for name, rs in rows.items()
    }
    assert digits["default"] <= {0, 1, 2, 3} and digits["eight"] - {0, 1, 2, 3}
    r = ks_here(
        "judge", "data", "--out", tmp_path / "x", "--train", "40", "--heldout", "10", "--train-wordings", "9"
    )
    assert r.returncode == 2 and "--train-wordings" in r.stdout + r.stderr
