"""call_sequence_parity and call_accuracy fail when a model calls the right tools in the wrong order, too
few or too many (the gold-data tests only ever see 1.0). Same builders as the scoring table."""

from __future__ import annotations

import pytest

from kimi_student.eval.gates import evaluate_gates
from kimi_student.eval.score.item import gate_counts, summarize
from kimi_student.tools.broker import ToolBroker
from tests.unit.eval.score.test_scoring_table import (
    FILE_CALL,
    GATES,
    MATH_CALL,
    fixtures_of,
    make_item,
    score,
    tok,  # noqa: F401 - the module fixture
    transcript,
)

ANSWER = "Integration: config/app.toml sets MAX_RETRIES = 5.\nIntegration: The value is 1234.56."
GOLD = [FILE_CALL, MATH_CALL]

# (calls the model makes, call_sequence_ok, calls matched of 2)
SEQUENCE_CASES = [
    pytest.param([FILE_CALL, MATH_CALL], True, 2, id="gold-order"),
    pytest.param([MATH_CALL, FILE_CALL], False, 2, id="swapped-order-fails-parity-not-accuracy"),
    pytest.param([FILE_CALL], False, 1, id="missing-call"),
    pytest.param([FILE_CALL, MATH_CALL, MATH_CALL], False, 2, id="extra-call"),
    pytest.param([FILE_CALL, FILE_CALL], False, 1, id="repeated-first-call"),
    pytest.param([], False, 0, id="no-call"),
]


@pytest.mark.parametrize(("calls", "ok", "matched"), SEQUENCE_CASES)
def test_call_sequence_of_a_multi_call_item(tok, calls, ok, matched):  # noqa: F811
    item = make_item(GOLD, ANSWER, request="Read config/app.toml and compute 1234.56 * 1.")
    sc = score(tok, item, transcript(calls, ANSWER), ToolBroker(fixtures_of(item)))
    assert sc.call_sequence_ok is ok
    assert (sc.calls_matched, sc.calls_expected, sc.calls_emitted) == (matched, 2, len(calls))
    # call_accuracy: matched / max(expected, emitted), so an extra or repeated call costs.
    assert summarize([sc])["call_accuracy"] == pytest.approx(matched / max(2, len(calls)))


def test_call_errors_are_counted_per_item_and_in_the_summary(tok):  # noqa: F811
    item = make_item(GOLD, ANSWER)
    broker = ToolBroker(fixtures_of(item))
    scores = [score(tok, item, transcript(c, ANSWER), broker) for c in ([FILE_CALL], GOLD + [MATH_CALL])]
    assert [s.call_errors for s in scores] == [{"missing_call": 1}, {"extra_call": 1}]
    s = summarize(scores)
    assert s["call_error_types"] == {"extra_call": 1, "missing_call": 1}
    assert s["call_accuracy"] == pytest.approx(3 / 5)  # (1 + 2) / (max(2, 1) + max(2, 3))


def test_single_call_items_do_not_count_for_parity(tok):  # noqa: F811
    item = make_item([FILE_CALL], ANSWER)
    sc = score(tok, item, transcript([MATH_CALL], ANSWER), ToolBroker(fixtures_of(item)))
    assert sc.call_sequence_ok is None
    s = summarize([sc])
    assert s["call_sequence_parity"] is None and s["call_accuracy"] == 0.0


def test_parity_below_the_threshold_fails_its_gate(tok):  # noqa: F811
    """1 of 2 multi-call items in order: parity 0.5 < 0.95, the gate fails; call_accuracy 3/4."""
    item = make_item(GOLD, ANSWER)
    broker = ToolBroker(fixtures_of(item))
    scores = [score(tok, item, transcript(c, ANSWER), broker) for c in (GOLD, [MATH_CALL])]
    s = summarize(scores)
    assert s["multi_call_items"] == 2
    assert s["call_sequence_parity"] == 0.5 and s["call_accuracy"] == pytest.approx(3 / 4)
    gates = evaluate_gates(s, gate_counts(s), {"call_sequence_parity": GATES["call_sequence_parity"]})
    assert gates["call_sequence_parity"]["status"] == "fail"
