"""A Judge asked once per group of checks (arbiter/groups.py, `judge eval --ask groups`): each question holds the
lines of the case its group reads and nothing of the others, a training case gives a row per group it breaks
and one it does not, whose targets are the oracle's own lines; a case's answers join into one worksheet in the
audit's order, ruled as its lines imply; the confidence of that ruling is the probability the Judge gives its
own decisions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from kimi_student.arbiter.audit import WAIVER_LINE
from kimi_student.arbiter.groups import GROUPS, case_of, group_rows, questions
from kimi_student.arbiter.judge_data import audit_target, records, write_dataset
from kimi_student.arbiter.judge_eval import (
    decisions_logprob,
    group_probabilities,
    group_questions,
    group_worksheet,
    padded_case,
    pair_candidates,
    ruled_by_groups,
)
from kimi_student.arbiter.ruling import implied_ruling
from kimi_student.jsonl import read_jsonl


@pytest.fixture(scope="module")
def cases() -> list[dict[str, Any]]:
    return [r for r in records(3, "train", 60, 0) if r["mode"] == "single"]


def test_each_question_holds_its_groups_lines_and_not_the_others(cases: list[dict[str, Any]]) -> None:
    for rec in cases[:20]:
        ctx, cand, w = case_of(rec)
        asked = dict(zip(GROUPS, questions(ctx, cand, w), strict=True))
        first_path = cand.diff.split("+++ b/", 1)[1].split("\n", 1)[0]
        for g, q in asked.items():
            assert ctx.spec["id"] in q  # the spec's head in every question
            for w_ in cand.waivers:
                assert w_["id"] in q  # and the waivers, which every fate depends on
            assert len(q) < len(rec["prompt"])
            assert ("scope out: " in q) == (g == "scope")
        assert "@@" not in "".join(asked.values())  # no question holds the diff's body
        assert first_path in asked["scope"]  # the stat names every path


def test_a_training_case_gives_a_row_per_broken_group_and_one_unbroken(cases: list[dict[str, Any]]) -> None:
    seen_broken = 0
    for rec in cases:
        _, parts = audit_target(rec)
        rows = group_rows(rec, parts, seed=3)
        asked = [r["id"].rsplit("-", 1)[1] for r in rows]
        broken = [g for g in GROUPS if any(grp == g and " -> " in line for grp, line in parts)]
        assert asked == [g for g in GROUPS if g in asked]  # in the audit's order
        assert set(broken) <= set(asked) and len(asked) == len(broken) + (len(broken) < len(GROUPS))
        seen_broken += bool(broken)
        ctx, cand, w = case_of(rec)
        for g, row in zip(asked, rows, strict=True):
            assert row["prompt"] == dict(zip(GROUPS, questions(ctx, cand, w), strict=True))[g]
            want = [line for grp, line in parts if grp in ("waivers", g)]
            assert json.loads(row["teacher_text"]) == {"checks": want}
        assert rows == group_rows(rec, parts, seed=3)  # seeded
    assert 10 <= seen_broken < len(cases)  # both kinds of case were drawn


def test_judge_data_ask_groups_writes_group_questions_for_training_only(tmp_path: Path) -> None:
    write_dataset(tmp_path / "c", 2, 12, 6)
    write_dataset(tmp_path / "g", 2, 12, 6, ask="groups")
    whole = [r for _, r in read_jsonl(tmp_path / "c" / "train_audit_sft.jsonl")]
    grouped = [r for _, r in read_jsonl(tmp_path / "g" / "train_audit_sft.jsonl")]
    assert grouped[0]["ask"] == "groups" and "ask" not in whole[0]
    singles = [r for r in whole[1:] if "-single-" in r["id"]]
    asked = [r for r in grouped[1:] if "-single-" in r["id"]]
    assert {r["id"].rsplit("-", 1)[0] for r in asked} == {r["id"] for r in singles}
    assert all(r["prompt"].startswith("Check this change's ") for r in asked)
    assert [r for r in grouped[1:] if "-pair-" in r["id"]] == [r for r in whole[1:] if "-pair-" in r["id"]]
    for name in ("train.jsonl", "heldout.jsonl", "heldout_audit_sft.jsonl", "train_sft.jsonl"):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "g" / name).read_bytes()
    with pytest.raises(Exception, match="ask"):
        write_dataset(tmp_path / "x", 2, 12, 6, ask="lines")


def _answers(parts: list[tuple[str, str]]) -> list[str]:
    return [
        json.dumps({"checks": [line for grp, line in parts if grp in ("waivers", g)]}, ensure_ascii=False)
        for g in GROUPS
    ]


def test_the_oracles_answers_join_into_its_worksheet_and_ruling(cases: list[dict[str, Any]]) -> None:
    for rec in cases:
        _, parts = audit_target(rec)
        raw = json.dumps(_answers(parts))
        checks, complete = group_worksheet(raw)
        assert checks == [line for _, line in parts] and complete
        verdict = json.loads(ruled_by_groups(None, rec["prompt"], raw))
        assert verdict["status"] == rec["label"]["status"]
        assert verdict["violated_clauses"] == rec["label"]["violated_clauses"]


def test_a_worksheet_takes_the_first_answers_waivers_and_counts_an_answer_cut_short() -> None:
    w1, w2 = (
        f"{WAIVER_LINE}WV-1 on budget_limit: active: valid",
        f"{WAIVER_LINE}WV-1 on budget_limit: expired",
    )
    budget = "files 6, tier 2 max 5: max_files_exceeded -> BUDGET_ADHERENCE blocking"
    answers = [
        json.dumps({"checks": [w1, budget]}),
        json.dumps({"checks": [w2, "src/a.py: in src: ok"]}),  # a later answer's waiver lines are not kept
        '{"checks": ["tests: pass", "lint: pa',  # cut short: its complete line counts, the case is not raw valid
        json.dumps({"checks": ["rationale a(1): 1 of 1 needed: ok"], "status": "PASS"}),  # more than asked
    ]
    checks, complete = group_worksheet(json.dumps(answers))
    assert checks == [w1, budget, "src/a.py: in src: ok", "tests: pass", "rationale a(1): 1 of 1 needed: ok"]
    assert not complete
    assert group_worksheet(json.dumps([json.dumps({"checks": [w1]})] * 4))[1]
    assert json.loads(ruled_by_groups(None, "", json.dumps(answers)))["status"] == "FAIL"
    nothing = json.dumps(["no", "checks", "at", "all"])
    assert ruled_by_groups(None, "", nothing) == nothing  # no line: no ruling, an error


def test_group_questions_cover_every_prompt_the_eval_decodes() -> None:
    rows = list(records(5, "heldout", 3, 2))
    singles = [r for r in rows if r["mode"] == "single"]
    pairs = [r for r in rows if r["mode"] == "pair"]
    asked = group_questions(singles, pairs)
    prompts = [r["prompt"] for r in singles] + [padded_case(r)[0] for r in singles]
    prompts += [p for r in pairs for p in pair_candidates(r)]
    assert set(prompts) == set(asked)
    assert all(len(qs) == len(GROUPS) for qs in asked.values())


class _Chat:
    def __init__(self, tok: Any):
        self.tok = tok

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tok(messages[0]["content"], add_special_tokens=False)["input_ids"]


class _Gen:
    """A generator's scoring half over a real tiny Llama: what `decisions_logprob` reads."""

    context = 1024

    def __init__(self, tok: Any, model: Any):
        self.chat, self.model = _Chat(tok), model

    def continuation_logprobs(self, prompt: list[int], conts: list[list[int]]) -> list[list[float]]:
        with torch.no_grad():
            out = []
            for c in conts:
                logp = torch.log_softmax(self.model(torch.tensor([prompt + c])).logits[0].double(), -1)
                out.append([float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(c)])
            return out


def test_the_confidence_of_a_ruling_is_the_probability_of_its_decisions(tok: Any, biased_llama: Any) -> None:
    """A model that always prefers ` ok` gives the `ok` of a check line more probability than a broken rule's
    name; the implied status gets the product over the answers, the other two share the rest."""
    gen = _Gen(tok, biased_llama({"Ġok": 8.0}))
    ok_line = json.dumps({"checks": ["files 3, tier 2 max 5: ok"]})
    broken = json.dumps(
        {"checks": ["files 6, tier 2 max 5: max_files_exceeded -> BUDGET_ADHERENCE blocking"]}
    )
    assert 0 > decisions_logprob(gen, "q", ok_line) > decisions_logprob(gen, "q", broken)
    assert decisions_logprob(gen, "q", json.dumps({"checks": []})) == 0.0  # no decision
    raw = json.dumps([ok_line] * len(GROUPS))
    probs = group_probabilities(gen, ["q"] * len(GROUPS), raw, ruled_by_groups(None, "", raw))
    p = math.exp(sum(decisions_logprob(gen, "q", ok_line) for _ in GROUPS))
    assert probs["PASS"] == pytest.approx(p) and 0 < p < 1
    assert probs["FAIL"] == probs["WAIVER_REQUIRED"] == pytest.approx((1 - p) / 2)
    unreadable = json.dumps(["x"] * len(GROUPS))
    assert group_probabilities(gen, ["q"] * 4, unreadable, unreadable) == {
        s: pytest.approx(1 / 3) for s in ("PASS", "FAIL", "WAIVER_REQUIRED")
    }
    assert implied_ruling([])[0] == "PASS"  # why an answer set with no line is an error, not a PASS
