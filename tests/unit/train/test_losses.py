"""KD losses against hand-computed values, and the two mistakes of the original implementation:
the missing T^2 factor and process weights aligned to the start of the sequence instead of the span."""

from __future__ import annotations

import math

import pytest
import torch

from kimi_student.errors import KimiStudentError
from kimi_student.train import losses as L


def t(x: list) -> torch.Tensor:  # noqa: D103
    return torch.tensor(x, dtype=torch.float32)


def test_cross_entropy_hand_value_weights_and_ignore() -> None:
    logits = t([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    targets = torch.tensor([[0, 1]])
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    ce1 = -math.log(math.e / (math.e + 2))
    assert L.cross_entropy(logits, targets).item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    w = t([[3.0, 1.0]])
    assert L.cross_entropy(logits, targets, w).item() == pytest.approx((3 * ce0 + ce1) / 4, rel=1e-6)
    assert L.cross_entropy(logits, torch.tensor([[0, -100]])).item() == pytest.approx(ce0, rel=1e-6)


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def _softmax(z: list[float], temp: float = 1.0) -> list[float]:
    e = [math.exp(v / temp) for v in z]
    return [v / sum(e) for v in e]


def test_forward_kl_hand_value_at_t1() -> None:
    s, te = [0.0, 0.0], [math.log(3.0), 0.0]  # p = (0.75, 0.25), q = (0.5, 0.5)
    want = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert L.kl_forward(t([[s]]), t([[te]])).item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.0])
def test_kl_terms_are_scaled_by_t_squared(temp: float) -> None:
    s, te = [0.3, -1.2, 2.0], [1.5, 0.1, -0.7]
    p, q = _softmax(te, temp), _softmax(s, temp)
    assert L.kl_forward(t([[s]]), t([[te]]), temp).item() == pytest.approx(temp**2 * _kl(p, q), rel=1e-5)
    assert L.kl_reverse(t([[s]]), t([[te]]), temp).item() == pytest.approx(temp**2 * _kl(q, p), rel=1e-5)
    # The original divided logits by T and stopped there: its value would be _kl(p, q) alone.
    if temp != 1.0:
        assert L.kl_forward(t([[s]]), t([[te]]), temp).item() != pytest.approx(_kl(p, q), rel=1e-3)


def test_kl_gradient_scale_is_stable_across_temperatures() -> None:
    """Why T^2: without it the gradient shrinks ~1/T^2 as T grows; with it, it stays the same order."""
    torch.manual_seed(0)
    s0, te = torch.randn(1, 4, 50), torch.randn(1, 4, 50) * 3
    norms = []
    for temp in (1.0, 8.0):
        s = s0.clone().requires_grad_(True)
        L.kl_forward(s, te, temp).backward()
        norms.append(s.grad.norm().item())
    assert 0.05 < norms[1] / norms[0] < 20  # 1/T^2 = 1/64 would fall outside


def test_generalised_jsd_hand_value_and_edges() -> None:
    s, te = [0.0, 0.0], [math.log(3.0), 0.0]
    p, q = [0.75, 0.25], [0.5, 0.5]
    for beta in (0.5, 0.2, 0.9):
        m = [beta * a + (1 - beta) * b for a, b in zip(p, q)]
        want = beta * _kl(p, m) + (1 - beta) * _kl(q, m)
        assert L.jsd(t([[s]]), t([[te]]), beta).item() == pytest.approx(want, rel=1e-5)
    assert L.jsd(t([[s]]), t([[te]]), 0.0).item() == 0.0
    assert L.jsd(t([[s]]), t([[s]]), 0.5).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(KimiStudentError):
        L.jsd(t([[s]]), t([[te]]), 1.5)


def test_vocab_mismatch_is_a_clear_error() -> None:
    with pytest.raises(KimiStudentError, match="vocabulary"):
        L.kl_forward(torch.zeros(1, 2, 10), torch.zeros(1, 2, 12))
    with pytest.raises(KimiStudentError, match="outside the student's vocabulary"):
        L.sparse_kd(
            "kl_forward", torch.zeros(1, 1, 10), torch.tensor([[[3, 12]]]), torch.log(t([[[0.5, 0.3]]]))
        )


def test_sparse_kl_equals_full_kl_when_the_tail_is_one_token() -> None:
    torch.manual_seed(1)
    s, te = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    log_p = torch.log_softmax(te, -1)
    top = log_p.topk(5, dim=-1)  # K = V - 1: the tail bucket is exactly the remaining token
    for kind, fn_full in (("kl_forward", L.kl_forward), ("kl_reverse", L.kl_reverse)):
        full = fn_full(s, te, 1.0)
        sparse = L.sparse_kd(kind, s, top.indices, top.values, temperature=1.0, server_temperature=1.0)
        assert sparse.item() == pytest.approx(full.item(), rel=1e-5)
    assert L.sparse_kd("jsd", s, top.indices, top.values, beta=0.5).item() == pytest.approx(
        L.jsd(s, te, 0.5).item(), rel=1e-5
    )


def test_sparse_logprobs_are_re_tempered_from_the_server_temperature() -> None:
    """An API returns logprobs at its own temperature; undo it. With K = V the result is exact."""
    z = t([[[2.0, 0.5, -1.0, 0.0]]])
    server_t, kd_t = 0.7, 2.0
    lp_server = torch.log_softmax(z / server_t, -1)
    got = L.sparse_teacher_logprobs(lp_server, server_t, kd_t)[..., :4]
    assert torch.allclose(got, torch.log_softmax(z / kd_t, -1), atol=1e-5)
    s = t([[[0.1, 0.2, 0.3, 0.4]]])
    ids = torch.tensor([[[0, 1, 2, 3]]])
    assert L.sparse_kd(
        "kl_forward", s, ids, lp_server, temperature=kd_t, server_temperature=server_t
    ).item() == pytest.approx(L.kl_forward(s, z, kd_t).item(), rel=1e-4)


def test_tail_bucket_holds_the_missing_mass() -> None:
    lp = torch.log(t([[[0.5, 0.2]]]))
    buckets = L.sparse_teacher_logprobs(lp, 1.0, 1.0)
    assert buckets.exp().tolist()[0][0] == pytest.approx([0.5, 0.2, 0.3], rel=1e-5)


def test_process_weights_land_on_the_span_not_the_sequence_start() -> None:
    # A prompt of 5 tokens, then the response; the integration span is response tokens [2, 4).
    w = L.process_weights(
        10, {"integration": [[2, 4]], "tool_name": [[0, 1]]}, {"integration": 2.0, "tool_name": 3.0}, offset=5
    )
    assert w.tolist() == [1, 1, 1, 1, 1, 3, 1, 2, 2, 1]
    assert w[2:4].tolist() == [1.0, 1.0]  # where the original put them


def test_loss_positions_keep_weights_sources_and_teacher_rows_with_their_targets() -> None:
    ids = torch.tensor([[10, 11, 12, 13], [20, 21, 22, 23]])
    w = t([[0.0, 1.0, 5.0, 1.0], [0.0, 0.0, 2.0, 0.0]])  # token 12 is a process step; 21, 23 no loss
    batch = {
        "input_ids": ids,
        "weights": w,
        "source": torch.tensor([[0, 1, 1, 2], [0, 0, 2, 0]]),
        "topk_ids": ids[..., None] + 100,
        "position_ids": torch.arange(4).repeat(2, 1),
    }
    at = L.loss_positions(w)
    assert at.tolist() == [[True, True, True], [False, True, False]]
    got = L.at_loss_positions(batch, at)
    # Position t predicts token t+1 and carries its weight, source and teacher row.
    assert got["input_ids"].tolist() == [[11, 12, 13, 22]]
    assert got["weights"].tolist() == [[1.0, 5.0, 1.0, 2.0]] and got["source"].tolist() == [[1, 1, 2, 2]]
    assert got["topk_ids"].tolist() == [[[111], [112], [113], [122]]]
    assert got["position_ids"] is batch["position_ids"]  # the model's inputs stay whole


def test_an_unknown_kd_term_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown KD term 'kl'"):
        L.sparse_kd("kl", torch.zeros(1, 1, 4), torch.tensor([[[0, 1]]]), torch.log(t([[[0.5, 0.3]]])))
