"""Line drills: every line's decision and fate recomputed here from the line's own operands (an independent
reading, not the functions that wrote it); half of the lines break their rule, near misses often; each line
is in the grammar the audit writes for a case; a drill's decisions are the tokens `verdict` weighs."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from kimi_student.arbiter.judge_data import audit_target, records
from kimi_student.arbiter.line_drills import line_drill, path_drill
from kimi_student.train.examples import process_spans

FATE = r"(?: -> (?P<clause>[A-Z_]+) (?:blocking|waived by (?P<by>WV-\d+)))?"
GRAMMAR = {  # kind -> the line, its operands named
    "budget": re.compile(
        r"(?P<what>files|lines added) (?P<seen>\d+), tier [123] max (?P<max>\d+)"
        r"(?:, (?P<raised>\d+) with (?P<wid>WV-\d+))?: (?P<out>ok|max_files_exceeded|max_loc_exceeded)" + FATE
    ),
    "coverage": re.compile(
        r"coverage (?P<low>[01]\.\d\d), tier floor (?P<floor>0\.\d\d): (?P<out>ok|coverage_below_floor)"
        + FATE
    ),
    "spec": re.compile(
        r"evidence for (?P<a>[A-Z]+-\d+), change for (?P<b>[A-Z]+-\d+): (?P<out>ok|evidence_other_spec)"
        + FATE
    ),
    "commit": re.compile(
        r"evidence on (?P<a>[0-9a-f]{7,12}), change (?P<b>[0-9a-f]{12}): (?P<out>ok|evidence_other_commit)"
        + FATE
    ),
    "rationale": re.compile(
        r"rationale(?:: no words| (?P<words>(?:\S+\(\d+\) ?)+)): (?P<have>\d+) of (?P<need>\d+) needed: "
        r"(?P<out>ok|rationale_missing)" + FATE
    ),
}
CLAUSE = {"budget": "BUDGET_ADHERENCE", "coverage": "GATE_INTEGRITY"}


def _read(line: str) -> tuple[str, re.Match]:
    for kind, grammar in GRAMMAR.items():
        m = grammar.fullmatch(line)
        if m:
            return kind, m
    raise AssertionError(f"a line in no drilled grammar: {line!r}")


def _decide(kind: str, m: re.Match) -> tuple[bool, bool]:
    """(broken, near) from the operands alone."""
    if kind == "budget":
        seen, top = int(m["seen"]), int(m["max"])
        return seen > top, abs(seen - top) <= 3
    if kind == "coverage":
        low, floor = float(m["low"]), float(m["floor"])
        return round(low - floor, 2) < 0, abs(low - floor) <= 0.031
    if kind == "rationale":
        numbered = re.findall(r"\((\d+)\)", m["words"] or "")
        assert [int(n) for n in numbered] == list(range(1, len(numbered) + 1))
        assert int(m["have"]) == len(numbered) <= int(m["need"])
        return int(m["have"]) < int(m["need"]), False
    a, b = m["a"], m["b"]
    broken = not (a.startswith(b) or b.startswith(a)) if kind == "commit" else a != b
    return broken, broken and sum(x != y for x, y in zip(a, b, strict=False)) <= 1 and len(a) == len(b)


@pytest.fixture(scope="module")
def drills() -> list[dict]:
    return [line_drill(0, i) for i in range(600)]


def test_every_decision_and_fate_follows_from_the_lines_own_operands(drills: list[dict]) -> None:
    kinds: Counter = Counter()
    for row in drills:
        for line in json.loads(row["teacher_text"])["checks"]:
            kind, m = _read(line)
            broken, near = _decide(kind, m)
            kinds[kind, broken] += 1
            kinds[kind, "near"] += near
            assert (m["out"] != "ok") == broken, line
            assert (m["clause"] is not None) == broken, line  # a broken line has its fate, an ok line none
            if broken:
                assert m["clause"] == CLAUSE.get(kind, "PROVENANCE"), line
            if kind == "budget" and broken:  # lifted exactly when the raised maximum admits it
                lifted = m["raised"] is not None and int(m["seen"]) <= int(m["raised"])
                assert (m["by"] == m["wid"]) if lifted else m["by"] is None, line
            elif broken:
                assert m["by"] is None, line
    for kind in GRAMMAR:  # every kind, both outcomes, about half broken
        ok, broken = kinds[kind, False], kinds[kind, True]
        assert ok >= 60 and broken >= 60 and 0.35 <= broken / (ok + broken) <= 0.65, (kind, ok, broken)
    for kind in ("budget", "coverage", "spec", "commit"):  # near misses: within 3, a cent, one character
        assert kinds[kind, "near"] >= 0.2 * (kinds[kind, False] + kinds[kind, True]), kind


def test_a_raised_maximum_is_drilled_both_lifted_and_not_where_asked() -> None:
    """None by default (stop 45: they confused a 135M Judge); where asked, lifted exactly when the raised
    maximum admits the count (checked above), and both ways."""
    assert not any(" with WV-" in row["teacher_text"] for row in (line_drill(0, i) for i in range(300)))
    lifted = over = 0
    for i in range(600):
        for line in json.loads(line_drill(0, i, raised=0.3)["teacher_text"])["checks"]:
            kind, m = _read(line)
            if kind == "budget" and m["raised"] and m["out"] != "ok":
                assert (m["by"] is not None) == (int(m["seen"]) <= int(m["raised"])), line
                lifted += m["by"] is not None
                over += m["by"] is None
    assert lifted >= 20 and over >= 20


def test_drills_are_seeded() -> None:
    assert line_drill(0, 7) == line_drill(0, 7) and line_drill(0, 7) != line_drill(1, 7)
    assert line_drill(0, 7)["id"] == "train-line-drill-000007"


def test_a_cases_audit_writes_its_drilled_lines_in_the_drills_grammar() -> None:
    """The kinds drilled, as real cases' audits write them: each parses with the grammar above (one
    grammar for both), and a broken one reads as broken from its operands."""
    seen: Counter = Counter()
    prefixes = ("files ", "lines added ", "coverage ", "evidence for ", "evidence on ", "rationale")
    for rec in records(3, "train", 120, 0):
        for _, line in audit_target(rec)[1]:
            # fates the drills do not write (a gate that warns or is off; several waivers) are left out
            # and a policy needing no words (a line with no comparison)
            if not line.startswith(prefixes) or re.search(r" -> .*(warning|skipped|WV-\d+, WV-)", line):
                continue
            if line == "rationale: 0 words needed: ok":
                continue
            kind, m = _read(line)
            seen[kind] += 1
            assert (m["out"] != "ok") == _decide(kind, m)[0], line
    assert all(seen[kind] >= 5 for kind in GRAMMAR), seen


def test_verdict_weighs_each_drilled_decision(drills: list[dict]) -> None:
    """`process_weights: {verdict: W}` reaches a drill's decisions: the outcome of every line (and its fate)
    is inside the `verdict` spans, the operands before it are not."""
    from transformers import AutoTokenizer

    from kimi_student.backends.embedded import smollm2_folder

    tok = AutoTokenizer.from_pretrained(smollm2_folder())
    for row in drills[:40]:
        text = row["teacher_text"]
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        weighed = {i for s, e in process_spans(text, enc["offset_mapping"])["verdict"] for i in range(s, e)}
        for line in json.loads(text)["checks"]:
            start = text.index(line)
            out = start + line.split(" -> ")[0].rindex(": ") + 2
            toks = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < start + len(line) and b > out]
            assert toks and all(i in weighed for i in toks), line
            head = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < start + 5 and b > start]
            assert head and not any(i in weighed for i in head), line


PATH = re.compile(
    r"(?P<path>\S+): (?:in (?P<entry>\S+): ok|under scope out (?P<out>\S+): path_in_scope_out"
    r"|not in scope in or support: path_outside_scope_in)(?P<fate> -> SCOPE_BOUNDARY blocking)?"
)


def _scope(prompt: str) -> dict[str, list[str]]:
    """The scope lists a path drill's prompt states, read back from its text."""
    lists = dict(re.findall(r"^(scope in|scope out|support): (.*)$", prompt, re.M))
    assert set(lists) == {"scope in", "scope out", "support"}, prompt
    return {k: v.split(", ") for k, v in lists.items()}


def _under(path: str, entry: str) -> bool:
    """Folder entries only (a glob entry is left to the oracle's own matcher, tested in test_scope)."""
    return path == entry or path.startswith(entry.rstrip("/") + "/")


def test_a_path_drill_checks_every_path_of_its_stat_against_the_scope_its_prompt_states() -> None:
    """Each line's path is a path of the prompt's stat, in the stat's order; its outcome follows from the
    prompt's scope lists (read independently: a path under a scope-out entry is out, whatever scope in
    says); about half of the paths break a rule, both rules come, and near misses (a path of the spec's own
    module under its scope-out `legacy` folder) are among them."""
    kinds: Counter = Counter()
    for i in range(300):
        row = path_drill(0, i)
        prompt, checks = row["prompt"], json.loads(row["teacher_text"])["checks"]
        scope = _scope(prompt)
        stat = re.findall(r"^ (\S+) \| \d+ [+-]*$", prompt, re.M)
        assert 3 <= len(stat) <= 8 and [PATH.fullmatch(c)["path"] for c in checks] == stat, row
        for line in checks:
            m = PATH.fullmatch(line)
            assert m, line
            out = [e for e in scope["scope out"] if _under(m["path"], e)]
            if m["out"]:
                kinds["out"] += 1
                kinds["near"] += "/legacy" in m["out"]
                assert m["out"] in out and m["fate"], line
            elif m["entry"]:
                kinds["in"] += 1
                assert not out and not m["fate"], line
                assert m["entry"] in scope["scope in"] + scope["support"], line
                assert "*" in m["entry"] or _under(m["path"], m["entry"]), line
            else:
                kinds["outside"] += 1
                assert not out and m["fate"], line
                assert not any(_under(m["path"], e) for e in scope["scope in"] + scope["support"]), line
    broken = kinds["out"] + kinds["outside"]
    assert 0.35 <= broken / (broken + kinds["in"]) <= 0.6, kinds
    assert kinds["out"] >= 150 and kinds["outside"] >= 150 and kinds["near"] >= 40, kinds


def test_a_path_drill_is_a_training_case_s_scope_in_a_training_wording() -> None:
    """Its prompt holds the spec's head and scope and the stat, nothing else a case states (no policy, no
    evidence, no waivers, no diff body); the module names are the training split's; seeded."""
    from kimi_student.arbiter.render import HELDOUT_VARIANTS, SECTIONS, TRAIN_VARIANTS

    heldout = {SECTIONS[i][0] for i in HELDOUT_VARIANTS}
    seen = set()
    for i in range(60):
        prompt = path_drill(0, i)["prompt"]
        lines = prompt.splitlines()
        assert lines[1] in {SECTIONS[i][0] for i in TRAIN_VARIANTS} and lines[1] not in heldout
        seen.add(lines[1])
        assert not re.search(r"budget|coverage|waiver|exit code|^diff --git|^@@", prompt, re.I | re.M), prompt
    assert len(seen) == 4  # the first four training wordings, by default
    assert {path_drill(0, i, wordings=8)["prompt"].splitlines()[1] for i in range(60)} == {
        SECTIONS[i][0] for i in TRAIN_VARIANTS
    }
    assert {path_drill(0, i, wordings=2)["prompt"].splitlines()[1] for i in range(30)} == {
        SECTIONS[0][0],
        SECTIONS[1][0],
    }
    assert path_drill(0, 7) == path_drill(0, 7) and path_drill(0, 7) != path_drill(1, 7)
    assert path_drill(0, 7)["id"] == "train-path-drill-000007"


def test_verdict_weighs_a_path_drill_s_decisions() -> None:
    """The word after the path (` in`, ` under`, ` not`: where every 135M Judge went wrong) and the outcome
    are inside the `verdict` spans; the path itself is not."""
    from transformers import AutoTokenizer

    from kimi_student.backends.embedded import smollm2_folder

    tok = AutoTokenizer.from_pretrained(smollm2_folder())
    for i in range(20):
        text = path_drill(0, i)["teacher_text"]
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        weighed = {i for s, e in process_spans(text, enc["offset_mapping"])["verdict"] for i in range(s, e)}
        for line in json.loads(text)["checks"]:
            start = text.index(line)
            first = start + line.index(": ") + 2  # the word after the path
            last = start + line.split(" -> ")[0].rindex(": ") + 2  # the outcome
            for at in (first, last):
                toks = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a <= at < b or a == at - 1]
                assert toks and any(i in weighed for i in toks), (line, at)
            head = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < start + 3 and b > start]
            assert head and not any(i in weighed for i in head), line
