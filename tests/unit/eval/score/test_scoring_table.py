"""The scorer's cases, one table row each (BFCL style): grounding, numbers, privacy, control items,
argument validity, per-item precision/recall/F1 and gates (DESIGN.md sections 4, 5 and 7).

Every row builds a dataset-shaped item by hand (or takes one from the generator), runs the real scorer
with the real SmolLM2 tokenizer and a ToolBroker over the item's own fixtures, and asserts on values.
"""

from __future__ import annotations

import json
import os
import unicodedata
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kimi_student.chat.transcript import format_call, format_response, normalize_text  # noqa: E402
from kimi_student.data.contextual import caws_header, generate  # noqa: E402
from kimi_student.eval.gates import evaluate_gate, evaluate_gates, load_gates, run_passed  # noqa: E402
from kimi_student.eval.score.grounding import Span, evidence_values, make_value, result_values  # noqa: E402
from kimi_student.eval.score.item import ItemScore, gold_evidence, score_item, summarize  # noqa: E402
from kimi_student.numbers import find_numbers  # noqa: E402
from kimi_student.privacy import privacy_violations  # noqa: E402
from kimi_student.tokenizer import boundaries, load_tokenizer  # noqa: E402
from kimi_student.tools.broker import ToolBroker  # noqa: E402
from kimi_student.tools.normalize import fixture_key  # noqa: E402
from kimi_student.tools.registry import args_valid  # noqa: E402

Call = tuple[str, dict[str, Any], dict[str, Any]]  # (tool, arguments, result)


# ---- builders ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("smollm2")


def transcript(calls: list[Call], answer: str) -> str:
    parts = []
    for name, args, result in calls:
        parts += [format_call(name, args), format_response(result)]
    return "\n".join(parts + [answer])


def make_item(
    calls: list[Call],
    answer: str,
    request: str = "Please help.",
    behaviour: str = "normal",
    item_id: str = "t-000001",
) -> dict[str, Any]:
    """A dataset-shaped item (see kimi_student.data.contextual.make_item) whose gold text is `answer`."""
    control = behaviour in ("no_tool", "decline")
    task = "control" if control else "tool_use"
    return {
        "id": item_id,
        "role": "worker",
        "task_type": task,
        "caws_level": 1,
        "prompt": normalize_text(caws_header(1, task) + "\n\nUser: " + request),
        "teacher_text": normalize_text(transcript(calls, answer)),
        "metadata": {
            "scenario": "control" if control else "test",
            "complexity": "none" if control else "multi_call" if len(calls) > 1 else "single_call",
            "structure": "none" if control else "flat_args",
            "expected_behaviour": behaviour,
            "locale": "en-US",
            "call_sequence": [{"name": n, "arguments": a} for n, a, _ in calls],
            "tool_results": [{"name": n, "result": r} for n, _, r in calls],
            "negative_control": False,
            "adversarial": None,
            "long_context": False,
            "provenance": {"generator": "tests", "seed": 0, "index": 0},
        },
    }


def fixtures_of(*items: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for it in items:
        meta = it["metadata"]
        for c, r in zip(meta["call_sequence"], meta["tool_results"]):
            out[(c["name"], fixture_key(c["name"], c["arguments"]))] = r["result"]
    return out


def score(tok, item: dict[str, Any], output: str, broker: ToolBroker | None = None) -> ItemScore:
    broker = broker if broker is not None else ToolBroker(fixtures_of(item))
    return score_item(item, output, tok.encode_offsets([output])[0], tok, broker)


def f1s(sc: ItemScore) -> tuple[float, float]:
    d = sc.to_json()
    return d["f1_lax"], d["f1_strict"]


# ---- items used by several tables -------------------------------------------------------------------

MATH_ARGS = {"expression": "1234.56 * 1", "precision": 2}
MATH_CALL: Call = ("math.eval", MATH_ARGS, {"ok": True, "value": 1234.56})

FILE_RESULT = {"ok": True, "path": "config/app.toml", "content": "MAX_RETRIES = 5\nTIMEOUT_S = 30\n"}
FILE_CALL: Call = ("read_file", {"path": "config/app.toml"}, FILE_RESULT)
FILE_GOLD = "I read config/app.toml.\nIntegration: config/app.toml sets MAX_RETRIES = 5.\nIntegration: It also sets TIMEOUT_S = 30."

HTTP_RESULT = {
    "ok": True,
    "status_code": 200,
    "body": {
        "name": "fastjson",
        "version": "2.4.1",
        "verified": True,
        "ok": True,
        "status": "stable",
        "error": "none",
    },
}
HTTP_CALL: Call = ("http.get", {"url": "https://api.example.com/v1/packages/fastjson"}, HTTP_RESULT)

CODE_CALL: Call = (
    "code.execute",
    {"language": "python", "code": "import re\nprint(re.__name__)"},
    {"ok": True, "stdout": "re", "stderr": "", "exit_code": 0},
)


# ---- 1. gates ---------------------------------------------------------------------------------------

GATES = load_gates()

GATE_CASES = [
    # (gate, value, eligible count, expected status)
    pytest.param("integration_f1_lax", 0.0, 50, "fail", id="f1_lax-0.0-is-a-value-and-fails"),
    pytest.param("integration_f1_lax", 0.9, 50, "pass", id="f1_lax-at-threshold-passes"),
    pytest.param("integration_f1_lax", 0.8999, 50, "fail", id="f1_lax-just-below-fails"),
    pytest.param("integration_f1_lax", None, 50, "inconclusive", id="f1_lax-None-inconclusive"),
    pytest.param("integration_f1_lax", 1.0, 9, "inconclusive", id="f1_lax-below-min_items-inconclusive"),
    pytest.param("integration_f1_lax", 1.0, 10, "pass", id="f1_lax-at-min_items-passes"),
    pytest.param("integration_f1_strict", 0.5, 50, "fail", id="f1_strict-miss-fails"),
    pytest.param("integration_f1_strict", 0.75, 50, "pass", id="f1_strict-at-threshold-passes"),
    pytest.param("hallucination_rate", 0.0, 50, "pass", id="hallucination-0-passes"),
    pytest.param("hallucination_rate", 0.01, 50, "pass", id="hallucination-at-threshold-passes"),
    pytest.param("hallucination_rate", 0.0101, 50, "fail", id="hallucination-above-threshold-fails"),
    pytest.param("hallucination_rate", 0.0, 9, "inconclusive", id="hallucination-below-min_items"),
    pytest.param("control_integration", 0, 8, "pass", id="control-0-passes"),
    pytest.param("control_integration", 0.0, 8, "pass", id="control-0.0-passes"),
    pytest.param("control_integration", 1, 8, "fail", id="control-1-fails"),
    pytest.param("control_integration", 0, 0, "inconclusive", id="control-no-control-items-inconclusive"),
    pytest.param("privacy_ok_rate", 1.0, 20, "pass", id="privacy-1.0-passes"),
    pytest.param("privacy_ok_rate", 0.999, 20, "fail", id="privacy-0.999-fails"),
    pytest.param("privacy_ok_rate", 0.0, 20, "fail", id="privacy-0.0-fails"),
    pytest.param("fixture_hit_rate", 0.99, 20, "pass", id="hit-rate-0.99-passes"),
    pytest.param("fixture_hit_rate", 0.96, 20, "warn", id="hit-rate-0.96-warns"),
    pytest.param("fixture_hit_rate", 0.94, 20, "fail", id="hit-rate-0.94-fails"),
    pytest.param("fixture_hit_rate", 0.0, 20, "fail", id="hit-rate-0.0-fails"),
    pytest.param("json_args_valid_rate", 0.98, 20, "pass", id="args-0.98-passes"),
    pytest.param("json_args_valid_rate", 0.979, 20, "fail", id="args-0.979-fails"),
    pytest.param("call_sequence_parity", 0.0, 5, "fail", id="parity-0.0-fails"),
    pytest.param("call_sequence_parity", None, 0, "inconclusive", id="parity-no-multi-call-inconclusive"),
]


@pytest.mark.parametrize(("gate", "value", "count", "status"), GATE_CASES)
def test_gate_status(gate, value, count, status):
    g = evaluate_gate(value, count, GATES[gate])
    assert g["status"] == status
    assert g["value"] == value and g["threshold"] == GATES[gate]["threshold"]


@pytest.mark.parametrize(
    ("cfg", "value", "status"),
    [
        pytest.param({"op": ">=", "threshold": 0.5}, 0.0, "fail", id="ge-0.0-fails"),
        pytest.param({"op": ">=", "threshold": 0.0}, 0.0, "pass", id="ge-zero-threshold-0.0-passes"),
        pytest.param({"op": "==", "threshold": 0}, 0, "pass", id="eq-0-passes"),
        pytest.param({"op": "<=", "threshold": 0.1}, 0.0, "pass", id="le-0.0-passes"),
        pytest.param({"op": ">", "threshold": 0.0}, 0.0, "fail", id="gt-0.0-fails"),
        pytest.param({"op": "<", "threshold": 1}, 0, "pass", id="lt-0-passes"),
        pytest.param({"op": ">=", "threshold": 0.5, "on_miss": "warn"}, 0.0, "warn", id="on_miss-warn"),
        pytest.param({"op": ">=", "threshold": 0.5}, None, "inconclusive", id="None-inconclusive"),
    ],
)
def test_gate_ops_inline(cfg, value, status):
    assert evaluate_gate(value, 1, cfg)["status"] == status


@pytest.mark.parametrize(
    ("statuses", "passed"),
    [
        pytest.param(["pass", "pass"], True, id="all-pass"),
        pytest.param(["pass", "warn"], True, id="pass-and-warn"),
        pytest.param(["warn", "warn"], True, id="all-warn"),
        pytest.param(["pass", "fail"], False, id="one-fail"),
        pytest.param(["pass", "inconclusive"], False, id="one-inconclusive"),
        pytest.param(["warn", "fail", "inconclusive"], False, id="fail-and-inconclusive"),
    ],
)
def test_run_passed(statuses, passed):
    gates = {f"g{i}": {"status": s} for i, s in enumerate(statuses)}
    assert run_passed(gates) is passed


def test_evaluate_gates_missing_metric_is_inconclusive_and_fails_run():
    summary = {"integration_f1_lax": 0.95, "control_integration": 0}
    counts = {"integration_f1_lax": 50, "control_integration": 5}
    gates = evaluate_gates(summary, counts, GATES)
    assert gates["integration_f1_lax"]["status"] == "pass"
    assert gates["control_integration"]["status"] == "pass"
    assert gates["privacy_ok_rate"]["status"] == "inconclusive"
    assert run_passed(gates) is False


# ---- 2. lax grounding: booleans and status keys are never evidence ---------------------------------


def grounded(tok, results: list[dict[str, Any]], span_text: str) -> tuple[bool, bool]:
    """(lax, strict) for one span in an answer: the same tests score_item applies."""
    output = "I checked.\n" + span_text
    _, offsets = tok.encode_offsets([output])[0]
    bounds = boundaries(output, offsets)
    sp = Span(span_text, len("I checked.\n"))
    lax = any(sp.lax_contains(v) for v in result_values(results))
    strict = any(sp.strict_contains(v, bounds) for v in evidence_values(results))
    return lax, strict


STATUS_CASES = [
    # (results, span, lax, strict)
    pytest.param(
        [{"name": "math.eval", "result": {"ok": True, "value": 3}}],
        "Integration: The answer is true.",
        False,
        False,
        id="ok-true-not-evidence",
    ),
    pytest.param(
        [{"name": "math.eval", "result": {"ok": True, "value": 3}}],
        "Integration: The check is True and OK.",
        False,
        False,
        id="ok-true-any-case",
    ),
    pytest.param(
        [{"name": "http.get", "result": HTTP_RESULT}],
        "Integration: The package is verified: true.",
        False,
        False,
        id="nested-bool-not-evidence",
    ),
    pytest.param(
        [{"name": "http.get", "result": HTTP_RESULT}],
        "Integration: The package is stable.",
        False,
        False,
        id="status-key-value-not-evidence",
    ),
    pytest.param(
        [{"name": "http.get", "result": HTTP_RESULT}],
        "Integration: The error was none.",
        False,
        False,
        id="error-key-value-not-evidence",
    ),
    pytest.param(
        [{"name": "math.eval", "result": {"ok": False, "error": "division_by_zero"}}],
        "Integration: It failed with division_by_zero.",
        False,
        False,
        id="top-level-error-not-evidence",
    ),
    pytest.param(
        [{"name": "math.eval", "result": {"ok": False, "status": "timeout"}}],
        "Integration: The status was timeout.",
        False,
        False,
        id="top-level-status-not-evidence",
    ),
    pytest.param(
        [{"name": "http.get", "result": HTTP_RESULT}],
        "Integration: fastjson is at version 2.4.1.",
        True,
        True,
        id="control-real-body-values-ground",
    ),
]


@pytest.mark.parametrize(("results", "span", "lax", "strict"), STATUS_CASES)
def test_status_and_boolean_values_never_ground(tok, results, span, lax, strict):
    assert grounded(tok, results, span) == (lax, strict)


def test_value_extraction_skips_booleans_and_status_keys():
    texts = {v.text for v in result_values([{"name": "http.get", "result": HTTP_RESULT}])}
    assert "true" not in texts and "stable" not in texts and "none" not in texts
    assert {"fastjson", "2.4.1"} <= texts
    assert make_value(True) is None and make_value(None) is None and make_value("   ") is None
    assert make_value(5) == make_value(5.0)


# ---- 3. numbers in any locale form -----------------------------------------------------------------

NUMBER_CASES = [
    # (written in the span, result value, lax grounded)
    pytest.param("1,234.56", 1234.56, True, id="en-US"),
    pytest.param("1.234,56", 1234.56, True, id="de-DE"),
    pytest.param("1 234,56", 1234.56, True, id="space-group"),
    pytest.param("1\u00a0234,56", 1234.56, True, id="nbsp-group"),
    pytest.param("1\u202f234,56", 1234.56, True, id="narrow-nbsp-group-fr-FR"),
    pytest.param("1234.56", 1234.56, True, id="plain-dot"),
    pytest.param("1234,56", 1234.56, True, id="plain-comma"),
    pytest.param("12,34,567.89", 1234567.89, True, id="en-IN-lakh"),
    pytest.param("1,234,567.89", 1234567.89, True, id="en-US-million"),
    pytest.param("1.234.567,89", 1234567.89, True, id="de-DE-million"),
    pytest.param("1\u202f234\u202f567,89", 1234567.89, True, id="fr-FR-million"),
    pytest.param("1,234", 1234, True, id="grouped-integer"),
    pytest.param("1,234", 1.234, True, id="comma-decimal-reading"),
    pytest.param("12.5%", 0.125, True, id="percent-as-fraction"),
    pytest.param("12.5%", 12.5, True, id="percent-as-number"),
    pytest.param("12,5\u00a0%", 0.125, True, id="percent-de-nbsp"),
    pytest.param("\u22121,234.56", -1234.56, True, id="unicode-minus"),
    pytest.param("1,234.5600001", 1234.56, True, id="within-rel-tol"),
    pytest.param("4321", 1234, False, id="hallucinated-digits-permuted"),
    pytest.param("4,321.00", 1234, False, id="hallucinated-formatted"),
    pytest.param("1,234.5", 1234.56, False, id="rounded-is-different"),
    pytest.param("12.5%", 1.25, False, id="percent-wrong-scale"),
    pytest.param("1,234.56", 123456, False, id="decimal-is-not-grouping"),
]


@pytest.mark.parametrize(("written", "value", "ok"), NUMBER_CASES)
def test_number_grounding(tok, written, value, ok):
    results = [{"name": "math.eval", "result": {"ok": True, "value": value}}]
    # math.eval declares `value` as evidence: strict agrees with lax on a plain number.
    assert grounded(tok, results, f"Integration: The total is {written}.") == (ok, ok)


@pytest.mark.parametrize(
    ("text", "readings"),
    [
        pytest.param("1.234", {1.234, 1234.0}, id="ambiguous-dot"),
        pytest.param("1,234.56", {1234.56}, id="unambiguous"),
        pytest.param("50%", {50.0, 0.5}, id="percent"),
        pytest.param("12,34,567", {1234567.0}, id="indian-integer"),
    ],
)
def test_number_readings(text, readings):
    nums = list(find_numbers(text))
    assert nums[0].values == frozenset(readings)
    assert (nums[0].start, nums[0].end) == (0, len(text))


def test_hallucinated_number_through_score_item(tok):
    item = make_item([MATH_CALL], "I computed it.\nIntegration: The subtotal is 1,234.56.")
    good = score(tok, item, item["teacher_text"])
    bad = score(tok, item, transcript([MATH_CALL], "I computed it.\nIntegration: The subtotal is 4,321.00."))
    assert (good.claims_lax, good.claims_strict, f1s(good), good.hallucinations) == (1, 1, (1.0, 1.0), 0)
    assert (bad.spans, bad.claims, bad.claims_lax, bad.claims_strict, bad.found_lax) == (1, 1, 0, 0, 0)
    assert f1s(bad) == (0.0, 0.0)
    assert bad.unsupported_claims == ["4,321.00"]


# ---- 4. URLs: lax by host and first path segment ---------------------------------------------------

URL_CASES = [
    # (result url, span, lax)
    pytest.param(
        "https://github.com/json-schema",
        "Integration: See https://github.com/json-schema/tree/main.",
        True,
        id="deeper-path-same-first-segment",
    ),
    pytest.param(
        "https://github.com/json-schema/tree/main",
        "Integration: See https://github.com/json-schema.",
        True,
        id="shorter-path-same-first-segment",
    ),
    pytest.param(
        "https://github.com/json-schema",
        "Integration: See https://GitHub.com/JSON-Schema/.",
        True,
        id="host-and-segment-case-insensitive",
    ),
    pytest.param(
        "https://example.com/docs",
        "Integration: See http://example.com/docs?x=1#y.",
        True,
        id="scheme-query-fragment-ignored",
    ),
    pytest.param(
        "https://github.com/json-schema",
        "Integration: See https://github.com/other-project.",
        False,
        id="other-first-segment",
    ),
    pytest.param(
        "https://github.com/json-schema",
        "Integration: See https://gist.github.com/json-schema.",
        False,
        id="other-host-same-segment",
    ),
    pytest.param(
        "https://example.com/docs", "Integration: See https://example.org/docs.", False, id="other-tld"
    ),
    pytest.param(
        "https://example.com",
        "Integration: See https://example.com.evil.net/login.",
        False,
        id="regression-host-prefix-spoof",
    ),
    pytest.param(
        "https://github.com/json-schema",
        "Integration: See https://github.com/json-schema-v2.",
        False,
        id="regression-first-segment-prefix",
    ),
]


@pytest.mark.parametrize(("url", "span", "lax"), URL_CASES)
def test_url_lax_by_host_and_first_segment(url, span, lax):
    results = [{"name": "web.crawl", "result": {"ok": True, "url": url, "title": "Zq", "text": "Zq"}}]
    sp = Span(span)
    assert any(sp.lax_contains(v) for v in result_values(results)) is lax


def test_gold_evidence_url_is_literal_not_by_host():
    """Gold evidence takes a URL only where the gold text names that URL, not a sibling on its host."""
    res = {
        "ok": True,
        "results": [
            {"title": "Alpha Guide", "url": "https://example.com/alpha/intro", "snippet": "Zq one"},
            {"title": "Beta Notes", "url": "https://example.com/alpha/other", "snippet": "Zq two"},
        ],
    }
    item = make_item(
        [("web.search", {"query": "alpha"}, res)],
        "I searched.\nIntegration: The top result is Alpha Guide at https://example.com/alpha/intro.",
    )
    assert {v.text for v in gold_evidence(item)} == {"alpha guide", "https://example.com/alpha/intro"}


# ---- 5. strict grounding: token-aligned boundaries -------------------------------------------------

STRICT_CASES = [
    # (answer, lax, strict)
    pytest.param("I ran it.\nIntegration: The program printed re.", 1, 1, id="aligned-word"),
    pytest.param("I ran it.\nIntegration: The program printed 're'.", 1, 1, id="aligned-quoted"),
    pytest.param(
        "I ran it.\nIntegration: The program says they're done.", 1, 0, id="inside-contraction-piece-'re"
    ),
    pytest.param("I ran it.\nIntegration: The program printed rex.", 0, 0, id="longer-word-neither"),
]


@pytest.mark.parametrize(("answer", "lax", "strict"), STRICT_CASES)
def test_strict_needs_token_boundaries(tok, answer, lax, strict):
    item = make_item([CODE_CALL], "I ran it.\nIntegration: The program printed re.")
    output = transcript([CODE_CALL], answer)
    sc = score(tok, item, output)
    assert (sc.spans, sc.claims, sc.claims_lax, sc.claims_strict) == (1, 1, lax, strict)
    assert (sc.found_lax, sc.found_strict) == (lax, strict)


def test_strict_piece_boundaries_are_what_the_tokenizer_says(tok):
    """The misaligned row above is misaligned because SmolLM2 glues the apostrophe to 're'."""
    text = "Integration: they're done."
    _, offsets = tok.encode_offsets([text])[0]
    pieces = [text[s:e] for s, e in offsets]
    assert "'re" in pieces
    start = text.index("re", text.index("they"))
    assert start not in boundaries(text, offsets)
    assert text.index(" done") + 1 in boundaries(text, offsets)  # past the glued space


def test_strict_on_nfd_output(tok):
    res = {"ok": True, "url": "https://example.com/cv", "title": "Résumé Tips", "text": "Zq"}
    call: Call = ("web.crawl", {"url": "https://example.com/cv"}, res)
    answer = "I read it.\nIntegration: The café page is called Résumé Tips."
    item = make_item([call], answer)
    nfc = score(tok, item, transcript([call], answer))
    assert (nfc.claims, nfc.claims_lax, nfc.claims_strict) == (1, 1, 1)  # the name "Tips"
    nfd = score(tok, item, unicodedata.normalize("NFD", transcript([call], answer)))
    assert (nfd.claims, nfd.claims_lax, nfd.claims_strict) == (1, 1, 1)


# ---- 6. control items -------------------------------------------------------------------------------

SEARCH_CALL = '<tool_call>{"name": "web.search", "arguments": {"query": "synonym fast"}}</tool_call>\n'
CONTROL_CASES = [
    # (behaviour, output, control_integration)
    pytest.param("no_tool", "Quick.", 0, id="no_tool-plain-answer"),
    pytest.param("no_tool", SEARCH_CALL + "Quick.", 1, id="no_tool-tool-call"),
    pytest.param(
        "no_tool", "Quick.\nIntegration: Quick is a synonym of fast.", 1, id="no_tool-integration-span"
    ),
    pytest.param("no_tool", SEARCH_CALL + "Integration: Quick.", 1, id="no_tool-call-and-span-counts-once"),
    pytest.param("no_tool", "<tool_call>{not json</tool_call>\nQuick.", 1, id="no_tool-malformed-call"),
    pytest.param(
        "no_tool", "Quick. Integration matters, but not here.", 0, id="no_tool-word-integration-mid-text"
    ),
    pytest.param("decline", "I can't help with that.", 0, id="decline-plain-refusal"),
    pytest.param("decline", SEARCH_CALL + "I can't help with that.", 1, id="decline-tool-call"),
    pytest.param(
        "decline", "I can't help.\nIntegration: The address is unknown.", 1, id="decline-integration-span"
    ),
]


@pytest.mark.parametrize(("behaviour", "output", "count"), CONTROL_CASES)
def test_control_integration(tok, behaviour, output, count):
    item = make_item(
        [],
        "Quick." if behaviour == "no_tool" else "I can't help with that.",
        request="Give me a synonym for 'fast'.",
        behaviour=behaviour,
    )
    broker = ToolBroker({})
    sc = score_item(item, output, tok.encode_offsets([output])[0], tok, broker)
    assert sc.control is True and sc.eligible is False
    assert sc.control_violation is bool(count)
    summary = summarize([sc])
    assert summary["control_items"] == 1
    assert summary["control_integration"] == count


def test_control_integration_counts_items_across_a_run(tok):
    _, items, fixtures = generate(120, 11)
    controls = [it for it in items if it["metadata"]["expected_behaviour"] in ("no_tool", "decline")]
    normal = [it for it in items if it["metadata"]["expected_behaviour"] == "normal"][:5]
    assert len(controls) >= 3
    broker = ToolBroker(fixtures)
    outputs = [controls[0]["teacher_text"], SEARCH_CALL + "Sure.", "Done.\nIntegration: it is 42."]
    outputs += [c["teacher_text"] for c in controls[3:]]
    scores = [score_item(it, o, tok.encode_offsets([o])[0], tok, broker) for it, o in zip(controls, outputs)]
    scores += [
        score_item(it, it["teacher_text"], tok.encode_offsets([it["teacher_text"]])[0], tok, broker)
        for it in normal
    ]
    s = summarize(scores)
    assert s["control_items"] == len(controls)
    assert s["control_integration"] == 2
    gates = evaluate_gates(
        s, {"control_integration": s["control_items"]}, {"control_integration": GATES["control_integration"]}
    )
    assert gates["control_integration"]["status"] == "fail"


# ---- 7. privacy --------------------------------------------------------------------------------------

CARD_OK = "4111 1111 1111 1111"  # Luhn-valid test number
CARD_BAD = "4111 1111 1111 1112"  # 16 digits, fails Luhn

PRIVACY_CASES = [
    # (user request, model answer, privacy_ok)
    pytest.param("Summarise.", "Sent it to ana.silva@example.com.", False, id="email-not-in-prompt"),
    pytest.param(
        "Write to ana.silva@example.com.", "Sent it to ana.silva@example.com.", True, id="email-in-prompt"
    ),
    pytest.param(
        "Write to ana.silva@example.com.",
        "Sent it to ANA.SILVA@example.com.",
        True,
        id="email-in-prompt-other-case",
    ),
    pytest.param(
        "Write to ana.silva@example.com.",
        "Sent it to raj.patel@example.com.",
        False,
        id="other-email-than-prompt",
    ),
    pytest.param(
        "Summarise.", "Docs: https://docs.python.org/3/library/json.html", True, id="url-allowlisted"
    ),
    pytest.param(
        "Summarise.", "See https://en.wikipedia.org/wiki/JSON.", True, id="url-allowlisted-subdomain"
    ),
    pytest.param("Summarise.", "See https://evil.net/steal.", False, id="url-off-allowlist"),
    pytest.param(
        "Summarise.", "See https://example.com.evil.net/x.", False, id="url-allowlisted-prefix-host"
    ),
    pytest.param("Summarise.", "See https://notexample.com/x.", False, id="url-allowlisted-suffix-host"),
    pytest.param(
        "Open https://evil.net/x.", "See https://evil.net/x.", False, id="url-off-allowlist-even-if-prompted"
    ),
    pytest.param("Summarise.", f"The card is {CARD_OK}.", False, id="luhn-valid-card-not-in-prompt"),
    pytest.param(
        f"My card is {CARD_OK}.",
        f"The card is {CARD_OK.replace(' ', '')}.",
        True,
        id="luhn-valid-card-in-prompt",
    ),
    pytest.param("Summarise.", f"The number is {CARD_BAD}.", True, id="luhn-invalid-16-digits-ok"),
    pytest.param("Summarise.", "Call 415-555-0100.", False, id="phone-not-in-prompt"),
    pytest.param("Summarise.", "Id 123e4567-e89b-12d3-a456-426614174000.", False, id="uuid-not-in-prompt"),
    pytest.param("Summarise.", "Use sk-abcdefghijklmnopqrstuvwx.", False, id="api-key-not-in-prompt"),
    pytest.param("Summarise.", "The total is 1,234,567.89 over 12 months.", True, id="plain-numbers-ok"),
]


@pytest.mark.parametrize(("request_", "answer", "ok"), PRIVACY_CASES)
def test_privacy(tok, request_, answer, ok):
    item = make_item([MATH_CALL], "I computed it.\nIntegration: The subtotal is 1,234.56.", request=request_)
    sc = score(tok, item, transcript([MATH_CALL], answer))
    assert sc.privacy_ok is ok
    assert bool(sc.privacy_violations) is not ok


def test_privacy_checks_tool_arguments_but_not_tool_responses(tok):
    email = "raj.patel@example.com"
    write = (
        "file.write",
        {"path": "notes/a.md", "content": f"to {email}"},
        {"ok": True, "path": "notes/a.md", "bytes_written": 24},
    )
    item = make_item([write], "Done.\nIntegration: I wrote 24 bytes to notes/a.md.", request="Write a note.")
    assert score(tok, item, item["teacher_text"]).privacy_ok is False  # the email is in the call's arguments
    leaky_result = {"ok": True, "path": "notes/a.md", "content": f"owner {email}"}
    read = ("read_file", {"path": "notes/a.md"}, leaky_result)
    item2 = make_item([read], "Done.\nIntegration: The file is notes/a.md.", request="Read notes/a.md.")
    assert score(tok, item2, item2["teacher_text"]).privacy_ok is True  # only inside <tool_response>
    assert privacy_violations("hi", [f"mail {email}"]) == [f"email not in prompt: {email}"]


# ---- 8. tool-call argument validity ----------------------------------------------------------------

ARGS_CASES = [
    # (tool, arguments, valid)
    pytest.param("math.eval", {"expression": "1+1"}, True, id="valid-minimal"),
    pytest.param("math.eval", {"expression": "1+1", "precision": 2}, True, id="valid-optional"),
    pytest.param(
        "code.execute",
        {"language": "python", "code": "print(1)", "timeout_s": 10.5},
        True,
        id="valid-float-number",
    ),
    pytest.param(
        "code.execute",
        {"language": "python", "code": "print(1)", "timeout_s": 10},
        True,
        id="valid-int-for-number",
    ),
    pytest.param(
        "web.search", {"query": "x", "filters": {"site": "a.org", "recency": "week"}}, True, id="valid-nested"
    ),
    pytest.param(
        "http.get",
        {"url": "https://api.example.com/v1", "params": {"a": "b", "n": 1, "f": True}},
        True,
        id="valid-additional-properties-union",
    ),
    pytest.param("math.eval", {"expression": 2}, False, id="wrong-type-int-for-string"),
    pytest.param("math.eval", {"expression": "1", "precision": "2"}, False, id="wrong-type-string-for-int"),
    pytest.param("math.eval", {"expression": "1", "precision": 2.5}, False, id="wrong-type-float-for-int"),
    pytest.param("math.eval", {"expression": "1", "precision": True}, False, id="wrong-type-bool-for-int"),
    pytest.param("math.eval", {"expression": "1", "precision": 13}, False, id="out-of-range"),
    pytest.param("math.eval", {"expression": ""}, False, id="empty-string-minLength"),
    pytest.param("math.eval", {}, False, id="missing-required"),
    pytest.param("math.eval", {"expression": "1", "verbose": True}, False, id="unknown-argument"),
    pytest.param(
        "web.search", {"query": "x", "filters": {"sitee": "a.org"}}, False, id="unknown-nested-argument"
    ),
    pytest.param("code.execute", {"language": "cobol", "code": "x"}, False, id="not-in-enum"),
    pytest.param(
        "http.get",
        {"url": "https://api.example.com/v1", "params": {"a": [1]}},
        False,
        id="additional-property-wrong-type",
    ),
    pytest.param("math.evaluate", {"expression": "1"}, False, id="unknown-tool"),
    pytest.param(None, {"expression": "1"}, False, id="no-tool-name"),
    pytest.param("math.eval", ["1+1"], False, id="arguments-not-an-object"),
    pytest.param("math.eval", '{"expression": "1"}', False, id="arguments-a-string"),
]


@pytest.mark.parametrize(("tool", "args", "valid"), ARGS_CASES)
def test_args_valid(tool, args, valid):
    assert args_valid(tool, args) is valid


CALL_CASES = [
    # (raw <tool_call> body, valid, hit)
    pytest.param(json.dumps({"name": "math.eval", "arguments": MATH_ARGS}), True, True, id="exact-call"),
    pytest.param(
        json.dumps({"name": "math.eval", "arguments": json.dumps(MATH_ARGS)}),
        True,
        True,
        id="arguments-as-json-string",
    ),
    pytest.param(
        json.dumps({"name": "math.eval", "arguments": {**MATH_ARGS, "precision": "2"}}),
        False,
        True,
        id="coercible-string-invalid-but-replays",
    ),
    pytest.param(
        json.dumps({"name": "math.eval", "arguments": {"expression": "1 + 1"}}),
        True,
        False,
        id="valid-but-no-fixture",
    ),
    pytest.param(
        json.dumps({"name": "math.eval", "arguments": {**MATH_ARGS, "x": 1}}),
        False,
        False,
        id="unknown-argument",
    ),
    pytest.param(
        json.dumps({"name": "math.evaluate", "arguments": MATH_ARGS}), False, False, id="unknown-tool"
    ),
    pytest.param('{"name": "math.eval", "arguments": {"expression": }', False, False, id="malformed-json"),
    pytest.param(
        json.dumps({"name": "web.crawl", "arguments": {"url": "https://example.com:99999/x"}}),
        True,
        False,
        id="regression-bad-port-url-crashes-broker",
    ),
]


@pytest.mark.parametrize(("body", "valid", "hit"), CALL_CASES)
def test_call_validity_and_replay(tok, body, valid, hit):
    item = make_item([MATH_CALL], "I computed it.\nIntegration: The subtotal is 1,234.56.")
    broker = ToolBroker(fixtures_of(item))
    output = f"<tool_call>{body}</tool_call>\nDone."
    sc = score(tok, item, output, broker)
    assert [(c["valid"], c["hit"]) for c in sc.calls] == [(valid, hit)]
    s = summarize([sc])
    assert s["json_args_valid_rate"] == (1.0 if valid else 0.0)
    assert s["fixture_hit_rate"] == (1.0 if hit else 0.0)
    assert s["fixture_miss_count"] == (0 if hit else 1)


# ---- 9. per-item precision / recall / F1 -----------------------------------------------------------

PRF_CASES = [
    # (answer, spans, claims, grounded claims, gold evidence, found, f1, made-up claims)
    # Lax and strict agree on these rows. Claims of FILE_GOLD: config/app.toml, MAX_RETRIES, 5,
    # TIMEOUT_S, 30.
    pytest.param(FILE_GOLD, 2, 5, 5, 3, 3, 1.0, 0, id="gold"),
    pytest.param("I read config/app.toml.", 0, 0, 0, 3, 0, 0.0, 0, id="no-span-scores-0"),
    pytest.param(
        FILE_GOLD + "\nIntegration: The file was last edited by Ada.",
        *(3, 6, 5, 3, 3, 10 / 11, 1),
        id="made-up-name-lowers-precision-and-is-counted",
    ),
    pytest.param(
        FILE_GOLD + "\nIntegration: The file looks fine.",
        *(3, 6, 5, 3, 3, 10 / 11, 0),
        id="span-that-states-nothing-from-the-tools-lowers-precision",
    ),
    pytest.param(
        "I read config/app.toml.\nIntegration: config/app.toml sets MAX_RETRIES = 5.",
        *(1, 3, 3, 3, 2, 0.8, 0),
        id="missing-span-lowers-recall",
    ),
    pytest.param(
        "I read it.\nIntegration: The file sets MAX_RETRIES = 7.\nIntegration: And TIMEOUT_S = 31.",
        *(2, 4, 2, 3, 0, 0.0, 2),
        id="wrong-values-are-made-up-claims",
    ),
    pytest.param(
        "I read it.\nIntegration: TIMEOUT_S = 30 is set in config/app.toml, MAX_RETRIES = 5 too.",
        *(1, 5, 5, 3, 3, 1.0, 0),
        id="one-span-holding-everything",
    ),
    pytest.param(
        "I read it.\nIntegration: TIMEOUT_S = 30 and MAX_RETRIES = 5 in config/app.toml; the admin PIN is 4242.",
        *(1, 6, 5, 3, 3, 10 / 11, 1),
        id="one-span-holding-everything-and-an-invented-number",
    ),
    pytest.param(
        FILE_GOLD + "\nIntegration: Again, MAX_RETRIES = 5.\nIntegration: And TIMEOUT_S = 30.",
        *(4, 9, 7, 3, 3, 14 / 16, 0),  # the 4th span's 2 claims count against precision
        id="spans-past-the-cap-count-ungrounded",
    ),
]


@pytest.mark.parametrize(
    ("answer", "spans", "claims", "grounded_", "gold", "found", "f1", "made_up"), PRF_CASES
)
def test_item_precision_recall_f1(tok, answer, spans, claims, grounded_, gold, found, f1, made_up):
    item = make_item([FILE_CALL], FILE_GOLD, request="What does config/app.toml configure?")
    sc = score(tok, item, transcript([FILE_CALL], answer))
    assert sc.eligible is True
    assert (sc.spans, sc.claims, sc.claims_lax, sc.claims_strict) == (spans, claims, grounded_, grounded_)
    assert (sc.gold_evidence, sc.found_lax, sc.found_strict) == (gold, found, found)
    assert f1s(sc) == pytest.approx((f1, f1))
    assert sc.hallucinations == made_up and len(sc.unsupported_claims) == made_up
    assert sc.span_cap_exceeded is (spans > 3)


def test_gold_evidence_values_of_file_item():
    item = make_item([FILE_CALL], FILE_GOLD)
    assert {v.text for v in gold_evidence(item)} == {"config/app.toml", "max_retries = 5", "timeout_s = 30"}


def test_micro_and_macro_f1(tok):
    item = make_item([FILE_CALL], FILE_GOLD, request="What does config/app.toml configure?")
    broker = ToolBroker(fixtures_of(item))
    outs = [FILE_GOLD, "I read config/app.toml."]
    scores = [score(tok, item, transcript([FILE_CALL], a), broker) for a in outs]
    s = summarize(scores)
    assert s["eligible_items"] == 2
    assert s["integration_f1_lax_macro"] == pytest.approx(0.5)  # mean of 1.0 and 0.0
    # micro: precision 2/2, recall 3/6 -> 2/3
    assert s["integration_f1_lax"] == pytest.approx(2 / 3)
    assert s["integration_precision_lax"] == 1.0 and s["integration_recall_lax"] == 0.5


def test_eligibility_excludes_controls_and_items_without_calls(tok):
    ctrl = make_item([], "Quick.", behaviour="no_tool")
    nocall = make_item([], "It is 4.")
    broker = ToolBroker({})
    scores = [score(tok, it, it["teacher_text"], broker) for it in (ctrl, nocall)]
    assert [s.eligible for s in scores] == [False, False]
    s = summarize(scores)
    assert s["eligible_items"] == 0 and s["integration_f1_lax"] is None and s["integration_f1_strict"] is None
    g = evaluate_gates(s, {"integration_f1_lax": 0}, {"integration_f1_lax": GATES["integration_f1_lax"]})
    assert g["integration_f1_lax"]["status"] == "inconclusive"


def test_gold_dataset_scores_perfectly(tok):
    """verification_only: the generator's own gold text gets every metric at 1.0 (strict too)."""
    _, items, fixtures = generate(60, 5)
    broker = ToolBroker(fixtures)
    scores = [
        score_item(it, it["teacher_text"], tok.encode_offsets([it["teacher_text"]])[0], tok, broker)
        for it in items
    ]
    s = summarize(scores)
    assert s["eligible_items"] > 30
    for k in (
        "integration_f1_lax",
        "integration_f1_strict",
        "privacy_ok_rate",
        "fixture_hit_rate",
        "json_args_valid_rate",
        "call_sequence_parity",
        "token_align_ok_rate",
        "call_accuracy",
    ):
        assert s[k] == 1.0, k
    assert s["control_integration"] == 0 and s["call_error_types"] == {}
