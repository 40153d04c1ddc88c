"""`judge eval --pairwise rulings`: a pair ruled from its two candidates' single verdicts. The ruling is the
oracle's ranking of the two statuses (a table, as BFCL tests its matching rules), an unreadable verdict leaves
the pair unreadable, and a candidate is rendered as the single case a Judge rules: the pair's context and
wording, both orders of a pair holding the same two."""

from __future__ import annotations

import json

import pytest

from kimi_student.arbiter.cases import Candidate, Context, label, winner
from kimi_student.arbiter.judge_data import pair
from kimi_student.arbiter.judge_eval import pair_candidates, ruled_pair
from kimi_student.arbiter.judge_scores import read_winner, score_pairs
from kimi_student.arbiter.render import ASK_PAIR, ASK_SINGLE, Wording, render_single


def _verdict(status: str) -> str:
    clauses = [] if status == "PASS" else ["SCOPE_BOUNDARY"]
    return json.dumps({"status": status, "violated_clauses": clauses, "rationale": f"{status}."})


@pytest.mark.parametrize(
    ("a", "b", "won"),
    [
        ("PASS", "FAIL", "a"),
        ("PASS", "WAIVER_REQUIRED", "a"),
        ("WAIVER_REQUIRED", "FAIL", "a"),
        ("FAIL", "PASS", "b"),
        ("WAIVER_REQUIRED", "PASS", "b"),
        ("FAIL", "WAIVER_REQUIRED", "b"),
        ("PASS", "PASS", "tie"),
        ("FAIL", "FAIL", "tie"),
        ("WAIVER_REQUIRED", "WAIVER_REQUIRED", "tie"),
    ],
)
def test_the_better_status_wins(a: str, b: str, won: str) -> None:
    out = ruled_pair(_verdict(a), _verdict(b))
    assert json.loads(out) == {"a": a, "b": b, "winner": won}
    assert read_winner(out).how == "raw"
    assert json.loads(ruled_pair(_verdict(b), _verdict(a)))["winner"] == {"a": "b", "b": "a"}.get(won, won)


@pytest.mark.parametrize("bad", ["", '{"status": "MAYBE"}', "PASS or FAIL", '{"winner": "a"}'])
def test_an_unreadable_candidate_leaves_the_pair_unreadable(bad: str) -> None:
    for out, which in ((ruled_pair(bad, _verdict("PASS")), "a"), (ruled_pair(_verdict("FAIL"), bad), "b")):
        assert read_winner(out).how == "error" and f"candidate {which}" in out


def test_a_candidates_verdict_is_read_as_a_single_cases_is() -> None:
    """A verdict cut off after its status is repaired to that status, as in the single cases' scores."""
    cut = '{"checks": ["files 3, tier 1 max 3: ok"], "violated_clauses": ["SCOPE_BOUNDARY"], "status": "FAIL'
    assert json.loads(ruled_pair(cut, _verdict("WAIVER_REQUIRED"))) == {
        "a": "FAIL",
        "b": "WAIVER_REQUIRED",
        "winner": "b",
    }


def test_a_pairs_candidates_are_its_single_cases_in_its_order() -> None:
    for i in range(12):
        ab, ba = pair(0, "heldout", i)
        a, b = pair_candidates(ab)
        assert pair_candidates(ba) == [b, a] and a != b
        ctx = Context(**ab["case"]["context"])
        cands = [Candidate(**c) for c in ab["case"]["candidates"]]
        w = Wording.from_key(ab["wording"])
        assert a == render_single(ctx, cands[0], w) and a.startswith(ASK_SINGLE)
        # the context both were read in: the pair prompt's lines before its first candidate
        shared = ab["prompt"].splitlines()[
            1 : ab["prompt"]
            .splitlines()
            .index(next(x for x in ab["prompt"].splitlines() if x.endswith("(A)")))
        ]
        assert a.splitlines()[1 : 1 + len(shared)] == shared and not a.startswith(ASK_PAIR)
        # the oracle's own rulings of the two as single cases give the pair's label
        va, vb = label(ctx, cands[0]), label(ctx, cands[1])
        assert ab["label"]["winner"] == winner(va, vb)


def test_rulings_by_the_oracle_score_every_pair_right_and_swap_consistent() -> None:
    records = [r for i in range(20) for r in pair(0, "heldout", i)]
    outs = []
    for r in records:
        ctx = Context(**r["case"]["context"])
        said = [_verdict(label(ctx, Candidate(**c)).status) for c in r["case"]["candidates"]]
        outs.append(ruled_pair(*said))
    s = score_pairs(records, outs)
    assert s["pairwise_accuracy"] == 1.0 and s["swap_consistency"] == 1.0 and s["errors"] == 0
    outs[0] = ruled_pair("", outs[0])  # one side unreadable: a miss in both accuracy and consistency
    s = score_pairs(records, outs)
    assert s["errors"] == 1 and s["swap_consistency"] == 19 / 20
