"""The audit target (the oracle's worksheet): on generated cases its lines name exactly the rules the oracle's
findings name, one ruling line per finding with the oracle's disposition; hand-made changes show the
comparisons at their edges; every prompt states what the rationale rule compares against."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, timezone

import pytest

from kimi_student.arbiter.audit import RULES, audit
from kimi_student.arbiter.cases import Candidate, Context, change_of
from kimi_student.arbiter.diff import parse_diff
from kimi_student.arbiter.documents import Evidence, EvidenceItem, Policy, Spec, Tier, Waiver
from kimi_student.arbiter.judge_data import records, target_text
from kimi_student.arbiter.judge_eval import padded_case
from kimi_student.arbiter.oracle import Change, check
from kimi_student.arbiter.render import DATES, RATIONALE_WORDS, Wording


def _named_rules(lines: list[str]) -> list[str]:
    """The rules the check lines break, in order (a broken line reads `... : rule -> CLAUSE fate`)."""
    return [line.split(" -> ")[0].rsplit(": ", 1)[1] for line in lines if " -> " in line]


def test_every_rule_name_is_one_a_line_can_end_in() -> None:
    assert {"waiver_invalid", "acceptance_unverified", "max_loc_exceeded", "rationale_missing"} <= RULES
    assert "ok" not in RULES and "valid" not in RULES and len(RULES) == 21


@pytest.fixture(scope="module")
def singles() -> list[dict]:
    return [r for split in ("train", "heldout") for r in records(5, split, 300, 0)]


def test_the_checks_name_the_oracles_findings_and_their_fates(singles: list[dict]) -> None:
    rules_seen: Counter = Counter()
    fates = Counter()
    for r in singles:
        change, now = change_of(Context(**r["case"]["context"]), Candidate(**r["case"]["candidates"][0]))
        verdict = check(change, now)
        lines = audit(change, now, verdict)
        assert _named_rules(lines) == [f.rule for f in verdict.findings], r["id"]  # no gate is skipped here
        broken = [line for line in lines if " -> " in line]
        for line, f in zip(broken, verdict.findings, strict=True):
            fate = line.split(" -> ", 1)[1]
            assert fate.startswith(f"{f.clause} ")
            assert (
                fate.split(" ")[1]
                == {"blocking": "blocking", "waived": "waived", "warning": "warning"}[f.disposition]
            )
            fates[f.disposition] += 1
        assert all(line.rsplit(": ", 1)[-1] not in RULES for line in lines)  # a broken line has its fate
        rules_seen.update(f.rule for f in verdict.findings)
        # every path of the change gets its own line; a check passed says ok
        assert all(any(line.startswith(p + ": ") for line in lines) for p in change.diff.paths)
        obj = json.loads(target_text(r, "audit"))
        assert obj["checks"] == audit(change, now, verdict, DATES[Wording.from_key(r["wording"]).dates])
        assert obj["status"] == verdict.status
    assert len(rules_seen) >= 14 and set(fates) == {"blocking", "waived", "warning"}


NOW = datetime(2027, 5, 11, 5, 0, tzinfo=timezone.utc)
DIFF = parse_diff(
    "diff --git a/src/a/x.py b/src/a/x.py\nindex 1..2 100644\n--- a/src/a/x.py\n+++ b/src/a/x.py\n"
    "@@ -1,1 +1,3 @@\n a\n+b\n+c\n"
    "diff --git a/src/b/y.py b/src/b/y.py\nindex 1..2 100644\n--- a/src/b/y.py\n+++ b/src/b/y.py\n"
    "@@ -1,1 +1,2 @@\n a\n+b\n"
)
SPEC = Spec("A-1", "t", 1, ("src/a",), ("src/a/legacy",), ("docs",))
POLICY = Policy({1: Tier(2, 2, 0.8)}, {}, min_approvers_for_budget_raise=2, min_rationale_words=3)
EVIDENCE = Evidence(
    "A-1",
    "abc1234",
    (
        EvidenceItem("tests", "pass", 0),
        EvidenceItem("lint", "fail", 2),
        EvidenceItem("coverage", "pass", value=0.8),
    ),
)


def _lines(**kw: object) -> list[str]:
    change = Change(**{"diff": DIFF, "spec": SPEC, "policy": POLICY, "evidence": EVIDENCE, **kw})  # type: ignore[arg-type]
    return audit(change, NOW, check(change, NOW))


def _coverage(value: float) -> Evidence:
    return Evidence("A-1", "abc1234", (*EVIDENCE.items[:2], EvidenceItem("coverage", "pass", value=value)))


def _raise(wid: str, expires: str, approvers: tuple[str, ...], spec: str | None) -> dict:
    """A change carrying one budget waiver (+5 lines)."""
    return {"waivers": (Waiver(wid, ("budget_limit",), "active", expires, approvers, spec, 0, 5, True),)}


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({}, "files 2, tier 1 max 2: ok"),  # at the maximum: within
        ({}, "lines added 3, tier 1 max 2: max_loc_exceeded -> BUDGET_ADHERENCE blocking"),
        ({}, "src/a/x.py: in src/a: ok"),
        ({}, "src/b/y.py: not in scope in or support: path_outside_scope_in -> SCOPE_BOUNDARY blocking"),
        ({}, "lint: fail (exit 2): lint_failed -> GATE_INTEGRITY blocking"),
        ({}, "coverage 0.80, tier floor 0.80: ok"),  # at the floor: enough
        (  # under the floor by less than a cent: printed with the digits that show it
            {"evidence": _coverage(0.7999)},
            "coverage 0.7999, tier floor 0.8000: coverage_below_floor -> GATE_INTEGRITY blocking",
        ),
        ({"evidence": _coverage(0.8049)}, "coverage 0.80, tier floor 0.80: ok"),  # over it: two decimals do
        (
            {"rationale": "fix it"},
            "rationale fix(1) it(2): 2 of 3 needed: rationale_missing -> PROVENANCE blocking",
        ),
        ({"rationale": "fix it now"}, "rationale fix(1) it(2) now(3): 3 of 3 needed: ok"),
        ({"rationale": "fix  the  parser crash"}, "rationale fix(1) the(2) parser(3): 3 of 3 needed: ok"),
        ({"rationale": " "}, "rationale: no words: 0 of 3 needed: rationale_missing -> PROVENANCE blocking"),
        (
            {"policy": Policy({1: Tier(2, 2, 0.8)}, {}, min_rationale_words=0), "rationale": ""},
            "rationale: 0 words needed: ok",
        ),
        (
            {"commit_sha": "abc1234def99"},
            "evidence on abc1234, change abc1234def99: ok",
        ),  # a prefix is the commit
        (
            {"commit_sha": "abd1234def99"},
            "evidence on abc1234, change abd1234def99: evidence_other_commit -> PROVENANCE blocking",
        ),
        ({"evidence": None}, "evidence: none: evidence_missing -> PROVENANCE blocking"),
        (
            _raise("WV-1", "2027-05-11T05:00:00Z", ("x", "y"), "A-1"),
            "waiver WV-1 on budget_limit: active; expires 2027-05-11 05:00 not after now 2027-05-11 05:00; for A-1; "
            "+0 files +5 lines; 2 approver(s), 2 needed: waiver_invalid -> WAIVER_VALIDITY blocking",
        ),  # expiring at the check time is expired
        (
            _raise("WV-2", "2027-06-01T00:00:00Z", ("x", "y"), None),
            "lines added 3, tier 1 max 2, 7 with WV-2: max_loc_exceeded -> BUDGET_ADHERENCE waived by WV-2",
        ),
        (
            _raise("WV-3", "2027-06-01T00:00:00Z", ("x",), "B-2"),
            "waiver WV-3 on budget_limit: active; expires 2027-06-01 00:00 after now 2027-05-11 05:00; for B-2, not A-1; "
            "+0 files +5 lines; 1 approver(s), 2 needed: waiver_invalid -> WAIVER_VALIDITY blocking",
        ),
    ],
)
def test_check_lines_at_their_edges(kw: dict, expected: str) -> None:
    assert expected in _lines(**kw)


def test_a_warning_gate_says_so() -> None:
    policy = Policy({1: Tier(2, 2, 0.8)}, {"scope_boundary": "warn"}, min_rationale_words=0)
    lines = _lines(policy=policy)
    assert (
        "src/b/y.py: not in scope in or support: path_outside_scope_in -> SCOPE_BOUNDARY warning "
        "(scope_boundary warns)" in lines
    )


def test_a_skipped_gate_says_so_and_rules_nothing() -> None:
    policy = Policy({1: Tier(2, 2, 0.8)}, {"scope_boundary": "skip"}, min_rationale_words=0)
    change = Change(DIFF, SPEC, policy, EVIDENCE)
    verdict = check(change, NOW)
    assert "path_outside_scope_in" not in [f.rule for f in verdict.findings]
    lines = audit(change, NOW, verdict)
    assert (
        "src/b/y.py: not in scope in or support: path_outside_scope_in -> SCOPE_BOUNDARY skipped "
        "(scope_boundary is off)" in lines
    )
    assert "lint: fail (exit 2): lint_failed -> GATE_INTEGRITY blocking" in lines  # the findings after it


def test_every_prompt_states_the_rationale_minimum() -> None:
    """The rationale rule compares a word count with the policy's minimum: every wording shows the minimum
    (a case whose minimum the Judge cannot see has a label it can only guess)."""
    seen = set()
    for split in ("train", "heldout"):
        for r in records(2, split, 60, 0, 8):
            n = r["case"]["context"]["policy"]["min_rationale_words"]
            shown = [v.format(n=n) for v in RATIONALE_WORDS if v.format(n=n) in r["prompt"]]
            assert len(shown) == 1, r["id"]
            seen.add(RATIONALE_WORDS.index(next(v for v in RATIONALE_WORDS if v.format(n=n) == shown[0])))
    assert seen == set(range(len(RATIONALE_WORDS)))


def test_a_rationale_that_doubles_over_the_minimum_is_no_flip_case() -> None:
    """judge eval's padded case writes the rationale twice: where that lifts a terse one over the policy's
    minimum the right status changes, and the case is left out of the flip rate; elsewhere it stays in."""
    kinds = Counter()
    for r in records(1, "train", 400, 0):
        words = len(r["case"]["candidates"][0]["rationale"].split())
        need = r["case"]["context"]["policy"]["min_rationale_words"]
        prompt, same = padded_case(r)
        assert prompt != r["prompt"]
        crosses = words < need <= 2 * words
        if not crosses:  # nothing else depends on the rationale's length
            assert same, r["id"]
        elif [f["rule"] for f in r["verdict"]["findings"]] == ["rationale_missing"]:
            assert not same and r["label"]["status"] == "FAIL", r["id"]  # padded: PASS
        kinds[same] += 1
    assert kinds[False] >= 1 and kinds[True] >= 300


def test_a_waivers_times_are_copied_as_the_prompt_writes_them() -> None:
    """The audit target writes a waiver's expiry and the check time in the case's own date wording, so that
    they are copies: every wording's times appear in its prompt word for word, in every date form."""
    wordings, dates = set(), set()
    for split in ("train", "heldout"):
        for r in records(4, split, 120, 0):
            for line in json.loads(target_text(r, "audit"))["checks"]:
                m = re.match(
                    r"waiver \S+ on [^:]+: [^;]+; expires (.+?) (?:after|not after) now (.+?); ", line
                )
                if m is None:
                    continue
                assert m.group(1) in r["prompt"] and m.group(2) in r["prompt"], (r["id"], line)
                wordings.add(r["wording"][r["wording"].index("d") :][:2])
                dates.add(re.sub(r"[A-Z][a-z]+", "M", re.sub(r"\d", "9", m.group(1))))
    assert len(wordings) == 6  # the date axis: four training wordings by default, two held-out ones
    assert len(dates) == 4  # two training date forms (three wordings share one), two held-out ones
    eight = {
        re.sub(r"[A-Z][a-z]+", "M", re.sub(r"\d", "9", m.group(1)))
        for r in records(4, "train", 200, 0, 8)
        for line in json.loads(target_text(r, "audit"))["checks"]
        if (m := re.match(r"waiver \S+ on [^:]+: [^;]+; expires (.+?) (?:after|not after) now (.+?); ", line))
        and m.group(1) in r["prompt"]
    }
    assert len(eight) == 6  # with --train-wordings 8: six training date forms
