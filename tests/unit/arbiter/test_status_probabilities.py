"""The Judge's status probabilities: the sequence probability of each status word after the case and what
the model wrote before `"status": "` (nothing but `{` for a verdict that starts with its status),
normalised; a case longer than the Judge's context gets 1/3 each. The model's side (log-probs of given
continuations) is the runners' and is tested with them; here a table of log-probs stands in for it, with
the embedded tokenizer's real ids."""

from __future__ import annotations

import math

import pytest

from kimi_student.arbiter.judge_eval import status_probabilities
from kimi_student.arbiter.verdict import STATUSES
from kimi_student.backends.embedded import smollm2_folder
from kimi_student.chat.template import ChatTokenizer


class TableJudge:
    """Log-probs of a status word's tokens: the status's figure spread over them; records what it was
    asked (the prompt's text, the continuations' texts)."""

    def __init__(self, context: int, own: dict[str, float]):
        self.chat, self.context, self.own = ChatTokenizer(smollm2_folder()), context, own
        self.asked: list[tuple[str, list[str]]] = []

    def continuation_logprobs(self, prompt: list[int], conts: list[list[int]]) -> list[list[float]]:
        texts = [self.chat.tok.decode(c) for c in conts]
        self.asked.append((self.chat.tok.decode(prompt), texts))
        return [[self.own[t] / len(c)] * len(c) for t, c in zip(texts, conts, strict=True)]


OWN = {"PASS": math.log(0.2), "FAIL": math.log(0.5), "WAIVER_REQUIRED": math.log(0.1)}


def test_probabilities_are_the_status_words_own_tokens_normalised() -> None:
    judge = TableJudge(4096, OWN)
    [p] = status_probabilities(judge, ["A change to judge."])
    assert p == pytest.approx({"PASS": 0.25, "FAIL": 0.625, "WAIVER_REQUIRED": 0.125})
    [(prompt, conts)] = judge.asked
    assert sorted(conts) == sorted(STATUSES)  # only the words differ: what they share is the prompt's
    assert prompt.endswith('A change to judge.<|im_end|>\n<|im_start|>assistant\n{"status": "')


def test_a_reasoned_verdict_is_scored_after_its_own_reasoning() -> None:
    """The status is scored where the model's output states it: after its budget and findings."""
    judge = TableJudge(4096, OWN)
    said = (
        '{"budget": {"files_changed": 3}, "findings": [], "violated_clauses": [], "status": "PASS", "r": 1}'
    )
    [p] = status_probabilities(judge, ["Case."], [said])
    assert p == pytest.approx({"PASS": 0.25, "FAIL": 0.625, "WAIVER_REQUIRED": 0.125})
    assert judge.asked[0][0].endswith("Case.<|im_end|>\n<|im_start|>assistant\n" + said[: said.index("PASS")])
    # an output without a status is scored from the verdict's start
    status_probabilities(judge, ["Case."], ["no JSON at all"])
    assert judge.asked[1][0].endswith('assistant\n{"status": "')


def test_a_case_longer_than_the_context_gets_no_preference() -> None:
    judge = TableJudge(64, {"PASS": 0.0, "FAIL": -5.0, "WAIVER_REQUIRED": -5.0})
    short, long = "Short.", "A long case. " * 40
    got = status_probabilities(judge, [short, long])
    assert got[0]["PASS"] > 0.98
    assert got[1] == {s: pytest.approx(1 / 3) for s in STATUSES}
    assert len(judge.asked) == 1  # the long case never reached the model
