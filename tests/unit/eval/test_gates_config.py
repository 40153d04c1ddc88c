"""load_gates (review D13/D15): a gate config that cannot be applied as written is refused in one line
naming the file, its line and the field; and errors never pass a run, whatever the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimi_student.errors import InputError
from kimi_student.eval.gates import DEFAULT_GATES, GATEABLE, load_gates
from kimi_student.eval.report import build_report
from kimi_student.eval.score.item import ItemScore, gate_counts

GOOD = 'gates:\n  integration_f1_lax: {op: ">=", threshold: 0.9, min_items: 10}\n'
CASES = [
    ("gates: {}\n", ":1: gates: needs at least one gate"),
    ("", ": gates: a gate config is a mapping with `gates:`, not an empty file"),
    ("- a\n- b\n", ":1: gates: a gate config is a mapping with `gates:`, not a list"),
    ("gates: [a]\n", ":1: gates: needs at least one gate"),
    (GOOD + "extra: 1\n", ":3: extra: unknown key (a gate config holds `gates:` only)"),
    (
        'gates:\n  integration_f1_lax: {op: ">=", threshold: 0.9,\n     min_items: abc}\n',
        ":3: gates.integration_f1_lax.min_items: 'abc' is not a whole number of items",
    ),
    (
        'gates:\n  integration_f1_lax: {op: ">=", threshold: 0.9, min_items: 1.5}\n',
        ":2: gates.integration_f1_lax.min_items: 1.5 is not a whole number of items",
    ),
    (
        'gates:\n  f1: {op: ">=", threshold: 0.9}\n',
        f":2: gates.f1: no summary metric of that name (gateable: {', '.join(GATEABLE)})",
    ),
    (
        'gates:\n  integration_f1_lax: {op: "=>", threshold: 0.9}\n',
        ":2: gates.integration_f1_lax.op: '=>' is not one of >=, <=, ==, >, <",
    ),
    (
        'gates:\n  integration_f1_lax: {op: ">=", threshold: 0.9, on_miss: maybe}\n',
        ":2: gates.integration_f1_lax.on_miss: 'maybe' is not one of fail, warn",
    ),
    (
        'gates:\n  integration_f1_lax: {op: ">=", threshold: 0.9, severity: soft}\n',
        ":2: gates.integration_f1_lax.severity: 'soft' is not one of normal, hard",
    ),
    (
        'gates:\n  integration_f1_lax: {op: ">=", threshold: "0.9"}\n',
        ":2: gates.integration_f1_lax.threshold: '0.9' is not a number",
    ),
    (
        'gates:\n  integration_f1_lax: {op: ">=", threshold: true}\n',
        ":2: gates.integration_f1_lax.threshold: True is not a number",
    ),
    (
        'gates:\n  integration_f1_lax:\n    op: ">="\n    thresold: 0.9\n',
        ":4: gates.integration_f1_lax.thresold: unknown key (known: op, on_miss, severity, threshold, "
        "warn_below, min_items)",
    ),
    (
        'gates:\n  integration_f1_lax: {op: ">="}\n',
        ":2: gates.integration_f1_lax.threshold: missing (a gate needs op and threshold)",
    ),
    ("gates:\n  integration_f1_lax: 3\n", ":2: gates.integration_f1_lax: a gate is a mapping"),
    ("gates: {a: [\n", ":2: gates: not valid YAML: expected the node content"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_a_bad_gate_config_is_one_line_naming_file_line_and_field(tmp_path: Path, text: str, expected: str):
    p = tmp_path / "g.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_gates(p)
    assert str(e.value).startswith(f"{p}{expected}"), str(e.value)
    assert "\n" not in str(e.value)


def test_the_packaged_config_and_a_good_one_load() -> None:
    assert sorted(load_gates(DEFAULT_GATES)) == sorted(GATEABLE)


def test_every_gateable_name_is_a_summary_metric() -> None:
    """GATEABLE is what gate_counts counts; each is a key of the summary a gate reads its value from."""
    from kimi_student.eval.score.item import summarize

    assert set(GATEABLE) <= set(summarize([])) and tuple(gate_counts(summarize([]))) == GATEABLE


def test_errors_never_pass_a_run_even_without_a_gate_for_them() -> None:
    rows = [ItemScore(f"x{i}", control=True, eligible=False, error="no output").to_json() for i in range(3)]
    rep = build_report({}, rows, [], {}, "r.jsonl")  # a config no load_gates would give: no gate at all
    assert rep["summary"]["error_items"] == 3 and rep["gates"]["fingerprints_complete"]["status"] == "pass"
    assert rep["passed"] is False
    clean = [ItemScore(f"x{i}", control=True, eligible=False).to_json() for i in range(3)]
    assert build_report({}, clean, [], {}, "r.jsonl")["passed"] is True
