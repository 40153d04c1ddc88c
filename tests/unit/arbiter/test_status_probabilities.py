"""The Judge's status probabilities: the sequence probability of `{"status": "<S>"` after the case, over
the tokens the three statuses do not share, normalised; a case longer than the Judge's context gets 1/3
each. The model's side (log-probs of given continuations) is the runners' and is tested with them; here a
table of log-probs stands in for it, with the embedded tokenizer's real ids."""

from __future__ import annotations

import math

import pytest

from kimi_student.arbiter.judge_eval import status_probabilities
from kimi_student.arbiter.verdict import STATUSES
from kimi_student.backends.embedded import smollm2_folder
from kimi_student.chat.template import ChatTokenizer


class TableJudge:
    """Log-probs of each token of a continuation: -1 for the tokens every status shares, then the status's
    own figure spread over its remaining tokens."""

    def __init__(self, context: int, own: dict[str, float]):
        self.chat, self.context, self.own, self.asked = ChatTokenizer(smollm2_folder()), context, own, []

    def continuation_logprobs(self, prompt: list[int], conts: list[list[int]]) -> list[list[float]]:
        self.asked.append(len(prompt))
        words = {
            tuple(self.chat.tok(f'{{"status": "{s}"', add_special_tokens=False)["input_ids"]): s
            for s in STATUSES
        }
        shared = 0
        while all(len(c) > shared and c[shared] == conts[0][shared] for c in conts):
            shared += 1
        out = []
        for c in conts:
            rest = len(c) - shared
            out.append([-1.0] * shared + [self.own[words[tuple(c)]] / rest] * rest)
        return out


def test_probabilities_are_the_statuses_own_tokens_normalised() -> None:
    own = {"PASS": math.log(0.2), "FAIL": math.log(0.5), "WAIVER_REQUIRED": math.log(0.1)}
    judge = TableJudge(4096, own)
    [p] = status_probabilities(judge, ["A change to judge."])
    assert p == pytest.approx({"PASS": 0.25, "FAIL": 0.625, "WAIVER_REQUIRED": 0.125})
    assert len(judge.asked) == 1


def test_a_case_longer_than_the_context_gets_no_preference() -> None:
    judge = TableJudge(64, {"PASS": 0.0, "FAIL": -5.0, "WAIVER_REQUIRED": -5.0})
    short, long = "Short.", "A long case. " * 40
    ticks = []
    got = status_probabilities(judge, [short, long], lambda: ticks.append(1))
    assert got[0]["PASS"] > 0.98
    assert got[1] == {s: pytest.approx(1 / 3) for s in STATUSES}
    assert len(judge.asked) == 1 and len(ticks) == 2  # the long case never reached the model
