"""The Drafter's objective on hand-made sequences: which pairs are the answer's, and what `prompt_weight` does
to the loss (0: the answer's pairs alone; 1: every pair alike, the plain mean)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kimi_student.drafter.config import DrafterTrainConfig
from kimi_student.drafter.train import divergence, padded, step_loss
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


@pytest.mark.parametrize("objective", ["kd", "ce"])
def test_each_later_pass_reads_the_pass_befores_predictions_from_one_position_further_on(
    objective: str,
) -> None:
    """K = 3's third draft reads a state predicted twice: `passes` 3 adds that pass, scored from position 2 on
    (where its input has been predicted twice), weighted by `second`."""
    b = padded(seqs(), [0, 1], D)
    m = drafter()
    pos = torch.arange(b["states"].shape[1])

    def run(passes: int, second: float = 1.0) -> tuple[float, dict[str, float]]:
        cfg = DrafterTrainConfig(objective=objective, noise=0.0, passes=passes, second=second)
        loss, parts = step_loss(m, b, cfg, 1.0)
        return float(loss.detach()), parts

    with torch.no_grad():
        shift = lambda p: torch.cat([b["states"][:, :1], p[:, :-1]], 1)  # noqa: E731
        p1 = m(b["states"], b["next"], pos)
        p2 = m(shift(p1), b["next"], pos)
        p3 = m(shift(p2), b["next"], pos)
        mask3 = b["pair"].clone()
        mask3[:, :2] = False
        target = torch.roll(b["states"], -1, dims=1)[mask3]
        logits = m.logits(p3[mask3])
        if objective == "ce":
            third = float(F.cross_entropy(logits, m.cut[b["after"][mask3]]))
        else:
            teacher = F.log_softmax(m.logits(target), -1)
            kl = F.kl_div(F.log_softmax(logits, -1), teacher, log_target=True, reduction="batchmean")
            third = float(F.smooth_l1_loss(p3[mask3], target) + kl)
    one, _ = run(1)
    two, parts2 = run(2)
    three, parts3 = run(3)
    key = "ce_third" if objective == "ce" else "kl_forward_third"
    assert key in parts3 and key not in parts2
    assert three - two == pytest.approx(third, rel=1e-4)
    assert run(3, second=0.5)[0] - one == pytest.approx((two - one + third) / 2, rel=1e-4)
    assert run(3, second=0.0)[0] == pytest.approx(one, rel=1e-6)  # weight 0: the first pass alone


def test_divergences_between_the_workers_distribution_and_the_drafters() -> None:
    logp = lambda *p: torch.tensor([p]).log()  # noqa: E731
    same, a, b = logp(0.5, 0.3, 0.2), logp(1.0, 0.0, 0.0), logp(0.0, 0.5, 0.5)
    assert float(divergence("tvd", same, same)) == pytest.approx(0.0, abs=1e-7)
    assert float(divergence("tvd", a, b)) == pytest.approx(1.0)  # disjoint: the most there is
    assert float(divergence("tvd", logp(0.6, 0.4, 0.0), logp(0.4, 0.4, 0.2))) == pytest.approx(0.2)
    p, q = [0.6, 0.4, 1e-9], [0.4, 0.4, 0.2]
    want = sum(x * math.log(x / y) for x, y in zip(p, q, strict=True))
    assert float(divergence("forward_kl", logp(*p), logp(*q))) == pytest.approx(want, rel=1e-4)
    # forward, not reverse: mass where the Worker puts it
    assert float(divergence("forward_kl", logp(*q), logp(*p))) > 10 * want
    with pytest.raises(ValueError, match="choose one of forward_kl, tvd"):
        divergence("js", same, same)
