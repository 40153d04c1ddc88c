"""The Drafter's objective on hand-made sequences: which pairs are the answer's, and what `prompt_weight` does
to the loss (0: the answer's pairs alone; 1: every pair alike, the plain mean)."""

from __future__ import annotations

import pytest
import torch

from kimi_student.drafter.config import DrafterTrainConfig
from kimi_student.drafter.train import padded, step_loss
from kimi_student.models.feature_drafter import DrafterConfig, FeatureDrafter

D, V = 16, 40


def drafter() -> FeatureDrafter:
    torch.manual_seed(0)
    cfg = DrafterConfig(D, 2, 1, 8, 32, 10000.0, 1e-5, V, V, "t")
    m = FeatureDrafter(cfg, torch.randn(V, D), torch.arange(V))
    m.cut = torch.arange(V)  # every token is in the head: its row is itself
    return m


def seqs() -> list[tuple[list[int], int, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for n, plen in ((9, 5), (6, 2)):
        out.append((torch.randint(0, V, (n,), generator=g).tolist(), plen, torch.randn(n, D, generator=g)))
    return out


def test_the_answer_pairs_are_those_whose_token_after_next_is_the_answers() -> None:
    b = padded(seqs(), [0, 1], D)
    # pair j predicts token j+2: the answer starts at plen, so pairs plen-2 .. n-3
    assert b["answer"][0].nonzero().flatten().tolist() == [3, 4, 5, 6]
    assert b["answer"][1].nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert b["pair"][0].sum() == 7 and b["pair"][1].sum() == 4
    assert not (b["answer"] & ~b["pair"]).any()


@pytest.mark.parametrize("objective", ["kd", "ce"])
def test_prompt_weight_zero_is_the_answers_mean_and_one_the_plain_mean(objective: str) -> None:
    s = seqs()
    b = padded(s, [0, 1], D)
    m = drafter()

    def loss(weight: float, batch: dict[str, torch.Tensor]) -> float:
        cfg = DrafterTrainConfig(objective=objective, noise=0.0, second=0.0, prompt_weight=weight)
        return float(step_loss(m, batch, cfg, 1.0)[0].detach())

    only_answers = {**b, "pair": b["pair"] & b["answer"]}
    assert loss(0.0, b) == pytest.approx(loss(1.0, only_answers), rel=1e-6)
    assert loss(0.0, b) != pytest.approx(loss(1.0, b), rel=1e-3)  # the prompt's pairs did count at 1
    half = loss(0.5, b)
    assert min(loss(0.0, b), loss(1.0, b)) < half < max(loss(0.0, b), loss(1.0, b))
