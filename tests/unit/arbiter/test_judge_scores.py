"""Judge scoring as tables: how an output is read (raw, repaired, error), and each metric on small hand-made
sets whose value is worked out by hand."""

from __future__ import annotations

import json

import pytest

from kimi_student.arbiter.judge_scores import (
    calibration,
    compare_results,
    flip_rate,
    read_verdict,
    read_winner,
    score_pairs,
    score_singles,
    score_worksheets,
)


def v(status: str, *clauses: str) -> str:
    return json.dumps({"status": status, "violated_clauses": list(clauses), "rationale": "r"})


@pytest.mark.parametrize(
    "text,how,status",
    [
        (v("PASS"), "raw", "PASS"),
        ("Verdict: " + v("FAIL", "PROVENANCE") + " trailing words", "raw", "FAIL"),
        ('{"a": 1} then ' + v("FAIL", "SCOPE_BOUNDARY"), "repaired", "FAIL"),  # first object is not a verdict
        (
            '{"status": "FAIL", "violated_clauses": ["SCOPE_BOUNDARY"], "rationale": "cut sho',
            "repaired",
            "FAIL",
        ),
        (v("PASS", "SCOPE_BOUNDARY"), "error", None),  # PASS naming a clause: both words, no single reading
        ('{"status": "OK", "violated_clauses": [], "rationale": "r"}', "error", None),
        ("PASS or FAIL, hard to say", "error", None),
        ("", "error", None),
    ],
)
def test_reading_a_verdict(text: str, how: str, status: str | None) -> None:
    r = read_verdict(text)
    assert r.how == how
    if how == "raw":
        assert r.value["status"] == status
    if how == "repaired" and status:
        assert r.value["status"] == status and r.value["violated_clauses"] == ["SCOPE_BOUNDARY"]
    if how == "error":
        assert r.value is None and r.problem


def test_a_repair_that_still_breaks_the_rules_is_an_error() -> None:
    # WAIVER_REQUIRED with no clause anywhere in the text: the repaired verdict names no clause, so it fails
    assert (
        read_verdict('{"status": "WAIVER_REQUIRED", "violated_clauses": [], "rationale": "r"}').how == "error"
    )


@pytest.mark.parametrize(
    "text,how,winner",
    [
        ('{"winner": "b"}', "raw", "b"),
        ('x {"winner": "tie"} y', "raw", "tie"),
        ('{"winner": "b"', "repaired", "b"),
        ('{"winner": "c"}', "error", None),
        ("a", "error", None),
    ],
)
def test_reading_a_winner(text: str, how: str, winner: str | None) -> None:
    r = read_winner(text)
    assert r.how == how and (r.value or {}).get("winner") == winner


GOLD = [
    {"status": "FAIL", "violated_clauses": ["BUDGET_ADHERENCE"]},
    {"status": "FAIL", "violated_clauses": ["SCOPE_BOUNDARY", "PROVENANCE"]},
    {"status": "PASS", "violated_clauses": []},
    {"status": "WAIVER_REQUIRED", "violated_clauses": ["SCOPE_BOUNDARY"]},
]


def test_single_case_metrics_by_hand() -> None:
    outputs = [v("FAIL", "BUDGET_ADHERENCE"), v("PASS"), v("PASS"), "garbage"]
    s = score_singles(GOLD, outputs)
    assert (s["cases"], s["errors"], s["raw_valid_rate"], s["valid_rate"]) == (4, 1, 0.75, 0.75)
    assert s["agreement"] == 0.5
    assert (s["fail_recall"], s["fail_called_pass"], s["waiver_recall"]) == (0.5, 0.5, 0.0)
    # kappa: observed 2/4; gold F,F,P,W; pred F,P,P,E -> expected = (2/4)(1/4) + (1/4)(2/4) = 0.25
    assert s["kappa"] == pytest.approx((0.5 - 0.25) / 0.75)
    # BUDGET: tp 1 -> f1 1; SCOPE: fn 2 -> 0; PROVENANCE: fn 1 -> 0; GATE, WAIVER: no support -> 0
    assert s["clause_f1"]["BUDGET_ADHERENCE"] == {"f1": 1.0, "support": 1}
    assert s["clause_f1"]["SCOPE_BOUNDARY"] == {"f1": 0.0, "support": 2}
    assert s["clause_f1_macro"] == pytest.approx(0.2) and s["clause_f1_min"] == 0.0
    perfect = score_singles(GOLD, [v(g["status"], *g["violated_clauses"]) for g in GOLD])
    assert (perfect["agreement"], perfect["kappa"], perfect["fail_recall"], perfect["errors"]) == (
        1.0,
        1.0,
        1.0,
        0,
    )


def test_raw_validity_is_the_free_outputs_where_the_verdicts_were_ruled_again() -> None:
    ruled = [v("FAIL", "BUDGET_ADHERENCE"), v("PASS"), v("PASS"), v("FAIL", "SCOPE_BOUNDARY")]
    free = [ruled[0], "PASS or", '{"status": "PASS", "violated_clauses": ["SCOPE_BOUNDARY"]', "garbage"]
    s = score_singles(GOLD, ruled, raw=free)
    # gold F, F, P, W; ruled F, P, P, F: two agree; only the first free output was a verdict
    assert (s["raw_valid_rate"], s["valid_rate"], s["errors"], s["agreement"]) == (0.25, 1.0, 0, 0.5)
    assert score_singles(GOLD, ruled)["raw_valid_rate"] == 1.0


def test_a_pairs_raw_validity_is_its_free_outputs() -> None:
    recs = [{"id": "p-ab", "label": {"winner": "a"}}, {"id": "p-ba", "label": {"winner": "b"}}]
    ruled = ['{"winner": "a"}', '{"winner": "b"}']
    s = score_pairs(recs, ruled, raw=['{"winner": "a"}', "b, I think"])
    assert (s["raw_valid_rate"], s["errors"], s["pairwise_accuracy"], s["swap_consistency"]) == (
        0.5,
        0,
        1.0,
        1.0,
    )


def test_worksheets_by_hand() -> None:
    want = [("budget", "files 1: ok"), ("scope", "a: in src: ok"), ("gates", "tests: pass")]
    said = [
        ["files 1: ok", "a: in src: ok", "tests: pass"],  # exact
        ["files 1: ok", "b: in src: ok", "tests: pass"],  # parts at the scope line (1 of 3 right before)
        ["files 1: ok"],  # stops early (1 of 3)
        ["files 1: ok", "a: in src: ok", "tests: pass", "tests: pass"],  # writes more (3 of 3)
        ["files 2: ok"],  # parts at once
        None,  # no worksheet: not counted
    ]
    w = score_worksheets(said, [want] * len(said))
    assert (w["cases"], w["exact"]) == (5, 1)
    assert w["first_error_by_family"] == {"budget": 1, "extra": 1, "missing": 1, "scope": 1}
    assert w["lines_right_before_first_error"] == pytest.approx((3 + 1 + 1 + 3 + 0) / 3 / 5)
    assert score_worksheets([None], [want]) == {
        "cases": 0,
        "exact": 0,
        "first_error_by_family": {},
        "lines_right_before_first_error": 0.0,
    }


def test_calibration_by_hand() -> None:
    gold = ["PASS", "FAIL"]
    probs = [
        {"PASS": 0.9, "FAIL": 0.05, "WAIVER_REQUIRED": 0.05},
        {"PASS": 0.7, "FAIL": 0.2, "WAIVER_REQUIRED": 0.1},
    ]
    c = calibration(gold, probs)
    # bin 9: conf 0.9, right; bin 7: conf 0.7, wrong -> ece = (|1 - 0.9| + |0 - 0.7|) / 2
    assert c["ece"] == pytest.approx(0.4)
    assert c["brier"] == pytest.approx(((0.1**2 + 0.05**2 + 0.05**2) + (0.7**2 + 0.8**2 + 0.1**2)) / 2)


def test_pair_metrics_by_hand() -> None:
    recs = [
        {"id": "p-1-ab", "label": {"winner": "a"}},
        {"id": "p-1-ba", "label": {"winner": "b"}},
        {"id": "p-2-ab", "label": {"winner": "b"}},
        {"id": "p-2-ba", "label": {"winner": "a"}},
        {"id": "p-3-ab", "label": {"winner": "tie"}},
        {"id": "p-3-ba", "label": {"winner": "tie"}},
    ]
    outs = [
        '{"winner": "a"}',
        '{"winner": "b"}',  # right and consistent
        '{"winner": "a"}',
        '{"winner": "a"}',  # position bias: one right, inconsistent
        '{"winner": "a"}',
        "??",
    ]  # ties excluded from accuracy; an error is inconsistent
    s = score_pairs(recs, outs)
    assert (
        s["pairwise_accuracy"] == 0.75 and s["swap_consistency"] == pytest.approx(1 / 3) and s["errors"] == 1
    )


def test_flip_rate() -> None:
    assert flip_rate(
        [v("PASS"), v("FAIL", "PROVENANCE"), v("PASS")], [v("PASS"), v("PASS"), "x"]
    ) == pytest.approx(2 / 3)
    # only the kept cases count: a case whose right status changed with the padding is no test of bias
    before, after = [v("PASS"), v("FAIL", "PROVENANCE"), v("PASS")], [v("PASS"), v("PASS"), "x"]
    assert flip_rate(before, after, [True, False, True]) == pytest.approx(1 / 2)
    assert flip_rate(before, after, [True, False, False]) == 0.0


def _single(rid: str, out: str, padded: str, p_pass: float = 0.5) -> dict:
    probs = {"PASS": p_pass, "FAIL": (1 - p_pass) / 2, "WAIVER_REQUIRED": (1 - p_pass) / 2}
    return {"id": rid, "output": out, "padded_output": padded, "status_probabilities": probs}


def test_comparing_two_runs_verdict_by_verdict() -> None:
    """Verdicts are compared as read (status and the set of clauses; a pair's winner), not as text; an
    unreadable output only equals another unreadable one; records must be the same, in the same order."""
    a = [
        _single("s1", v("FAIL", "PROVENANCE", "SCOPE_BOUNDARY"), v("PASS"), 0.2),
        _single("s2", v("PASS"), v("PASS"), 0.9),
        _single("s3", "garbage", v("FAIL", "PROVENANCE"), 0.5),
        {"id": "p1-ab", "output": '{"winner": "a"}'},
        {"id": "p1-ba", "output": '{"winner": "b"}'},
    ]
    b = [
        _single("s1", v("FAIL", "SCOPE_BOUNDARY", "PROVENANCE") + " ", v("PASS"), 0.25),  # same verdict
        _single("s2", v("PASS"), v("FAIL", "PROVENANCE"), 0.9),  # padded verdict differs
        _single("s3", "other garbage", v("FAIL", "PROVENANCE"), 0.5),  # both unreadable: the same
        {"id": "p1-ab", "output": '{"winner": "a"}'},
        {"id": "p1-ba", "output": '{"winner": "tie"}'},  # differs
    ]
    c = compare_results(a, b)
    assert c["differ"] == ["p1-ba"] and c["differ_padded"] == ["s2"]
    assert c["verdicts_identical"] == pytest.approx(4 / 5)
    assert c["padded_verdicts_identical"] == pytest.approx(2 / 3)
    assert c["outputs_identical"] == pytest.approx(2 / 5)  # s2 and p1-ab
    assert c["status_probability_max_diff"] == pytest.approx(0.05)
    assert compare_results(a, a)["differ"] == [] and compare_results(a, a)["verdicts_identical"] == 1.0
    b[1]["output"] = "garbage"  # a verdict against an unreadable output differs
    assert compare_results(a, b)["differ"] == ["s2", "p1-ba"]
    with pytest.raises(ValueError, match="same records"):
        compare_results(a, b[::-1])
