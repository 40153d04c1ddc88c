"""`judge lines`' scoring, pure: where each check line stands in the audit target, which lines a Judge's
most likely tokens write exactly and where the first miss is, and the table per group with the lines that
break a rule apart."""

from __future__ import annotations

import json

from kimi_student.arbiter.cases import Candidate, Context
from kimi_student.arbiter.judge_data import case_parts, single, target_text
from kimi_student.arbiter.judge_lines import line_misses, line_spans, summarise
from kimi_student.arbiter.render import Wording
from kimi_student.train.examples import process_spans


def _case(i: int) -> tuple[str, list[tuple[str, str]]]:
    rec = single(0, "heldout", i)
    ctx, cand = Context(**rec["case"]["context"]), Candidate(**rec["case"]["candidates"][0])
    return target_text(rec, "audit"), case_parts(ctx, cand, Wording.from_key(rec["wording"]))


def test_spans_find_each_line_in_the_targets_text() -> None:
    for i in range(30):
        target, parts = _case(i)
        spans = line_spans(target, parts)
        assert [target[s:e] for _, _, s, e in spans] == [
            json.dumps(x, ensure_ascii=False)[1:-1] for _, x in parts
        ]
        assert [s for _, _, s, _ in spans] == sorted(s for _, _, s, _ in spans)  # in order, none found twice
    # a line written twice is found twice, each where it stands
    twice = '{"checks": ["tests: pass", "tests: pass"]}'
    assert [s for *_, s, _ in line_spans(twice, [("gates", "tests: pass")] * 2)] == [13, 28]


def _tokens(text: str) -> tuple[list[tuple[int, int]], list[int]]:
    """A character per token: offsets and ids."""
    return [(i, i + 1) for i in range(len(text))], [ord(c) for c in text]


def test_a_line_is_exact_only_when_every_token_of_it_is_and_the_first_miss_is_named() -> None:
    target = '{"checks": ["files 13, tier 2 max 10: max_files_exceeded -> BUDGET_ADHERENCE blocking", "a.py: in a: ok"]}'
    parts = [
        ("budget", "files 13, tier 2 max 10: max_files_exceeded -> BUDGET_ADHERENCE blocking"),
        ("scope", "a.py: in a: ok"),
    ]
    spans = line_spans(target, parts)
    offsets, gold = _tokens(target)
    decisions = process_spans(target, offsets)["verdict"]
    rows = line_misses(spans, offsets, gold, list(gold), decisions)
    assert [(r["group"], r["broken"], r["exact"], r["at"]) for r in rows] == [
        ("budget", True, True, None),
        ("scope", False, True, None),
    ]
    pred = list(gold)
    at = target.index(": max_files") + 2
    pred[at] = ord("o")  # "ok" where the rule stands: the budget line's decision, missed
    pred[target.index("}")] = ord("x")  # outside every line: no line's miss
    rows = line_misses(spans, offsets, gold, pred, decisions)
    assert [(r["exact"], r["at"]) for r in rows] == [(False, at), (True, None)]
    table = summarise(rows + [{"status": "FAIL", "broken": False, "exact": True}])
    assert table["budget broken"] == {"lines": 1, "exact": 0, "decided": 0, "copied": 1, "share": 0.0}
    assert table["scope ok"] == {"lines": 1, "exact": 1, "decided": 1, "copied": 1, "share": 1.0}
    assert table["all broken"]["lines"] == 1 and table["all ok"]["lines"] == 1
    assert table["status"] == {"lines": 1, "exact": 1, "decided": 1, "copied": 1, "share": 1.0}
    assert "waivers ok" not in table  # a group with no lines is not listed


def test_a_line_is_decided_when_its_decision_tokens_are_right_and_copied_when_the_others_are() -> None:
    """The decisions are the process kind `verdict`'s spans of the audit target: a missed copy leaves a line
    decided but not copied, a missed comparison copied but not decided, and the table counts each."""
    target = (
        '{"checks": ["files 13, tier 2 max 10: max_files_exceeded -> BUDGET_ADHERENCE blocking", '
        '"src/a.py: in src: ok", "tests: pass"]}'
    )
    parts = [
        ("budget", "files 13, tier 2 max 10: max_files_exceeded -> BUDGET_ADHERENCE blocking"),
        ("scope", "src/a.py: in src: ok"),
        ("gates", "tests: pass"),
    ]
    spans = line_spans(target, parts)
    offsets, gold = _tokens(target)
    decisions = process_spans(target, offsets)["verdict"]
    pred = list(gold)
    pred[target.index("13")] = ord("9")  # a copy missed: 93 files
    pred[target.index(" in src") + 1] = ord("u")  # the scope decision missed: `under`
    rows = line_misses(spans, offsets, gold, pred, decisions)
    assert [(r["exact"], r["decided"], r["copied"]) for r in rows] == [
        (False, True, False),
        (False, False, True),
        (True, True, True),
    ]
    pred = list(gold)
    pred[target.index("pass")] = ord("f")  # the outcome missed
    rows = line_misses(spans, offsets, gold, pred, decisions)
    assert [(r["exact"], r["decided"], r["copied"]) for r in rows] == [
        (True, True, True),
        (True, True, True),
        (False, False, True),
    ]
    assert summarise(rows)["all ok"] == {"lines": 2, "exact": 1, "decided": 1, "copied": 2, "share": 0.5}


def test_the_broken_kind_is_the_decisions_of_the_lines_that_break_a_rule() -> None:
    """process kind `broken`: of the `verdict` spans of an audit target, those inside a line that breaks a
    rule (`-> CLAUSE ...`), each such line holding one or more, every other line none."""
    seen = 0
    for i in range(40):
        target, parts = _case(i)
        offsets, _ = _tokens(target)
        spans = process_spans(target, offsets)
        assert set(map(tuple, spans["broken"])) <= set(map(tuple, spans["verdict"]))
        for _, line, start, end in line_spans(target, parts):
            inside = [s for s, e in spans["broken"] if start <= s and e <= end]
            assert bool(inside) == (" -> " in line), line
            seen += bool(inside)
        assert all(any(s <= a < e for *_, s, e in line_spans(target, parts)) for a, _ in spans["broken"])
    assert seen >= 20
    assert process_spans('{"status": "FAIL", "violated_clauses": []}', _tokens("x" * 40)[0])["broken"] == []
