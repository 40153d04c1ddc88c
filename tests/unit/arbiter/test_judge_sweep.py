"""`judge sweep`'s variants, pure: the case keeps its own count or score, the tier's limit moves so that the
swept line's two values stand `delta` apart, the line is the oracle's and breaks its rule on the right side;
a decision is read off the line's decision tokens only; the table counts each side."""

from __future__ import annotations

import json
import re

import pytest

from kimi_student.arbiter.judge_data import audit_target, single
from kimi_student.arbiter.judge_sweep import DELTAS, RULES, outcome_at, outcome_right, summarise, variants
from kimi_student.arbiter.line_drills import ASK_LINES

_NUMBERS = {
    "files": re.compile(r"files (\d+), tier \d max (\d+)"),
    "lines": re.compile(r"lines added (\d+), tier \d max (\d+)"),
    "coverage": re.compile(r"coverage ([\d.]+), tier floor ([\d.]+)"),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_variant_moves_the_limit_to_stand_delta_from_the_cases_value(rule: str) -> None:
    seen = set()
    for i in range(30):
        rec = single(0, "heldout", i)
        original = json.loads(audit_target(rec)[0])["checks"]
        for v in variants(rec, rule):
            value, limit = map(float, _NUMBERS[rule].match(v["line"]).groups())
            scale = 100 if rule == "coverage" else 1
            assert round((value - limit) * scale) == v["delta"], v["line"]
            assert (" -> " in v["line"]) is v["breaks"] and v["breaks"] is (
                v["delta"] > 0 if rule != "coverage" else v["delta"] < 0
            )
            assert limit >= 0 and (rule != "coverage" or limit <= 1)
            prompt, target = v["case"]
            checks = json.loads(target)["checks"]
            assert v["line"] in checks and len(checks) == len(original)
            # the case's own value is kept: the line's first number is the original line's
            before = next(x for x in original if _NUMBERS[rule].match(x))
            assert _NUMBERS[rule].match(before)[1] == _NUMBERS[rule].match(v["line"])[1]
            assert (prompt == rec["prompt"]) is (v["line"] == before)
            assert v["drill"] == (ASK_LINES, json.dumps({"checks": [v["line"]]}, ensure_ascii=False))
            seen.add(v["delta"])
    assert seen == set(DELTAS[rule])


def test_a_case_without_the_check_has_no_variant_and_an_invalid_limit_is_skipped() -> None:
    recs = [single(0, "heldout", i) for i in range(60)]
    bare = [
        r
        for r in recs
        if not any(x.startswith("coverage ") for x in json.loads(audit_target(r)[0])["checks"])
    ]
    assert bare and all(variants(r, "coverage") == [] for r in bare)
    for r in recs[:20]:
        files = [v for v in variants(r, "files")]
        value = int(_NUMBERS["files"].match(files[0]["line"])[1])
        assert {v["delta"] for v in files} == {d for d in DELTAS["files"] if value - d >= 0}


def test_a_line_is_read_at_its_outcome_alone() -> None:
    """The outcome's first token decides: a copied digit missed or a wrong fate after ` -> ` does not count
    (a fate reads the waivers, which a drill does not show), another line's outcome does not either."""
    target = (
        '{"checks": ["tests: pass", "coverage 0.60, tier floor 0.70: coverage_below_floor -> GATE_INTEGRITY '
        'waived by WV-0042"]}'
    )
    line = json.loads(target)["checks"][1]
    at = outcome_at(target, line)
    assert target[at:].startswith("coverage_below_floor ->")
    offsets, gold = [(i, i + 1) for i in range(len(target))], [ord(c) for c in target]
    assert outcome_right(target, line, offsets, gold, list(gold))
    for text, char in (("0.60", "9"), ("waived", "b"), (": pass", "f")):
        pred = list(gold)
        pred[target.index(text) + 2] = ord(char)
        assert outcome_right(target, line, offsets, gold, pred), text
    wrong = list(gold)
    wrong[at] = ord("o")  # `ok` where the rule breaks
    assert not outcome_right(target, line, offsets, gold, wrong)
    ok_line = "files 3, tier 1 max 4: ok"
    assert (
        json.dumps({"checks": [ok_line]})[outcome_at(json.dumps({"checks": [ok_line]}), ok_line) :] == 'ok"]}'
    )


def test_the_table_counts_each_distance_and_each_side() -> None:
    rows = [
        {"context": "case", "delta": d, "breaks": d < 0, "right": ok}
        for d, ok in ((-3, False), (-3, False), (0, True), (3, True), (3, False))
    ] + [{"context": "drill", "delta": -3, "breaks": True, "right": True}]
    table = summarise(rows)
    assert list(table) == ["case", "drill"]
    assert table["case"]["-3"] == {"right": 0, "lines": 2} and table["case"]["+3"] == {
        "right": 1,
        "lines": 2,
    }
    assert table["case"]["breaks"] == {"right": 0, "lines": 2}
    assert table["case"]["holds"] == {"right": 2, "lines": 3}
    assert table["drill"] == {
        "-3": {"right": 1, "lines": 1},
        "breaks": {"right": 1, "lines": 1},
        "holds": {"right": 0, "lines": 0},
    }
