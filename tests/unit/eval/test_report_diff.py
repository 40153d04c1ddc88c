"""`report diff`'s rules as a table: which move of a metric is a regression, which gates count as lost, which
header differences make two reports incomparable; and the tolerance config's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimi_student.arbiter.judge_eval import METRICS as JUDGE_METRICS
from kimi_student.errors import InputError
from kimi_student.eval.gates import GATEABLE
from kimi_student.eval.report_diff import (
    diff_reports,
    diff_table,
    fingerprint_changes,
    flat_metrics,
    gate_flips,
    judge_metric,
    load_tolerances,
    report_kind,
    report_metrics,
)


@pytest.mark.parametrize(
    ("base", "new", "better", "tol", "verdict"),
    [
        (0.90, 0.86, "higher", 0.03, "regressed"),  # fell by more than the tolerance
        (0.90, 0.87, "higher", 0.03, "within"),  # fell by exactly the tolerance: allowed
        (0.90, 0.95, "higher", 0.03, "improved"),
        (0.01, 0.03, "lower", 0.01, "regressed"),  # a rate that should fall rose
        (0.03, 0.01, "lower", 0.01, "improved"),
        (1.0, 0.999, "higher", 0.0, "regressed"),  # zero tolerance: any fall
        (0.5, 0.5, "higher", 0.0, "same"),
        (0.5, 0.1, None, None, "changed"),  # not judged: shown only
        (0.9, None, "higher", 0.03, "missing"),  # NEW no longer measures a judged metric
        (None, 0.9, "higher", 0.03, "changed"),  # newly measured
        (None, None, "higher", 0.03, "same"),
    ],
)
def test_a_metric_regresses_only_beyond_its_tolerance_in_its_bad_direction(
    base: float | None, new: float | None, better: str | None, tol: float | None, verdict: str
) -> None:
    assert judge_metric(base, new, better, tol) == verdict


def test_nested_numbers_are_dotted_metrics_and_the_rest_is_not() -> None:
    s = {
        "a": 1,
        "b": {"c": 0.5, "d": {"e": 2}},
        "f": [1, 2],
        "g": "x",
        "h": True,
        "i": None,
        "j": float("nan"),
    }
    assert flat_metrics(s) == {"a": 1.0, "b.c": 0.5, "b.d.e": 2.0, "i": None, "j": None}


def test_a_gate_is_lost_when_it_passed_and_now_fails_is_inconclusive_or_is_gone() -> None:
    """A warn passes (a run whose gates warn exits 0), in BASE and in NEW alike."""
    g = {"op": ">=", "threshold": 0.9}
    base = {k: {**g, "status": "pass", "value": 0.95} for k in "abcdf"} | {"e": {**g, "status": "fail"}}
    base["w"] = {**g, "status": "warn", "value": 0.96}
    new = {
        "a": {**g, "status": "pass", "value": 0.91},
        "b": {**g, "status": "fail", "value": 0.5},
        "c": {**g, "status": "inconclusive", "value": None},
        "e": {**g, "status": "pass"},  # fixed: not a loss
        "f": {**g, "status": "warn", "value": 0.95},  # still passing
        "w": {**g, "status": "fail", "value": 0.8},
    }
    assert [(f.gate, f.base, f.new) for f in gate_flips(base, new)] == [
        ("b", "pass", "fail"),
        ("c", "pass", "inconclusive"),
        ("d", "pass", "absent"),
        ("w", "warn", "fail"),
    ]


def test_reports_of_different_datasets_registries_or_kinds_are_not_comparable() -> None:
    h = {
        "dataset_sha256": "d1",
        "tool_registry_sha256": "r1",
        "tokenizer_fingerprint": "t1",
        "model_fingerprint": "m1",
    }
    assert fingerprint_changes(h, {**h, "model_fingerprint": "m2", "code_version": "x"}) == []
    assert fingerprint_changes(h, {**h, "dataset_sha256": "d2"}) == [("dataset_sha256", "d1", "d2")]
    assert fingerprint_changes(h, {**h, "report": "caws-eval"}) == [("report", "eval", "caws-eval")]
    drop = {k: v for k, v in h.items() if k != "tokenizer_fingerprint"}
    assert fingerprint_changes(h, drop) == [("tokenizer_fingerprint", "t1", None)]


def test_the_diff_says_regression_for_a_lost_gate_even_within_tolerance() -> None:
    tol = {"f1": {"better": "higher", "tolerance": 0.05}}
    gate = {"op": ">=", "threshold": 0.9}
    base = {"header": {}, "summary": {"f1": 0.91}, "gates": {"f1": {**gate, "status": "pass", "value": 0.91}}}
    new = {"header": {}, "summary": {"f1": 0.89}, "gates": {"f1": {**gate, "status": "fail", "value": 0.89}}}
    d = diff_reports(base, new, tol)
    assert d["regressed_metrics"] == [] and [g["gate"] for g in d["gates_lost"]] == ["f1"] and d["regression"]
    assert "gate lost: f1 (>= 0.9): pass at 0.91 -> fail at 0.89" in diff_table(d)
    ok = diff_reports(base, {**new, "gates": base["gates"]}, tol)
    assert not ok["regression"] and diff_table(ok).endswith("no regression")


def test_the_packaged_tolerances_name_only_metrics_the_reports_have() -> None:
    tol = load_tolerances()
    summary_only = {
        "integration_f1_lax_macro",
        "tool_call_f1",
        "call_accuracy",
        "brier",
        "tool_span_micro_f1",  # the toy-e2e report's metric, as report_metrics names it
    }  # reported, not gated
    assert set(tol) <= set(GATEABLE) | set(JUDGE_METRICS) | summary_only
    assert {"integration_f1_lax", "hallucination_rate", "agreement", "fail_called_pass"} <= set(tol)
    assert tol["hallucination_rate"]["better"] == "lower" and tol["agreement"]["better"] == "higher"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("metrics: {f1: {better: up, tolerance: 0.1}}", (1, "metrics.f1.better")),
        ("metrics:\n  f1: {better: higher, tolerance: -1}", (2, "metrics.f1.tolerance")),
        ("metrics:\n  f1: {better: higher}", (2, "metrics.f1")),
        ("gates: {}", (None, "metrics")),
        ("metrics: [", (1, "tolerances")),
    ],
)
def test_a_bad_tolerance_config_names_its_line_and_field(text: str, where: tuple, tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_tolerances(p)
    assert (e.value.line, e.value.field) == where or (where[0] is None and e.value.field == where[1])


def test_every_kind_of_report_gives_its_figures_flat() -> None:
    toy = {"header": {"primary_shape": "T128"}, "metric": {"name": "tool_span_micro_f1", "f1": 0.9, "tp": 9},
           "steps_seconds": {"train": 12.5, "total": 30.0}}  # fmt: skip
    assert report_kind(toy["header"]) == "toy-e2e"
    assert report_metrics(toy) == {
        "tool_span_micro_f1": 0.9, "tool_span_micro_tp": 9.0, "seconds.train": 12.5, "seconds.total": 30.0
    }  # fmt: skip
    worker = {"header": {"config": "c"}, "eval_summary": {"integration_f1_lax": 0.95}}
    assert report_metrics(worker) == {"integration_f1_lax": 0.95} and report_kind(worker["header"]) == "eval"
    assert report_kind({"report": "caws-eval"}) == "caws-eval" and report_metrics({"header": {}}) == {}
