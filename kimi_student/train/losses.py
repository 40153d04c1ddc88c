"""Distillation losses. Pure torch functions; shapes in comments (B batch, L positions, V vocab, K top-k).

Every per-token loss is reduced as a weighted mean: sum(w * loss) / sum(w), with w = 0 on padding and
prompt tokens and w > 1 on process steps (tool names, JSON arguments, integration spans).
KL terms computed at temperature T are multiplied by T^2 so their gradients keep the scale of the CE
term as T changes (Hinton et al.); the original implementation forgot this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kimi_student.errors import KimiStudentError

Tensor = torch.Tensor


def _wmean(per_token: Tensor, weights: Tensor | None) -> Tensor:
    if weights is None:
        return per_token.mean()
    w = weights.to(per_token.dtype)
    return (per_token * w).sum() / w.sum().clamp_min(1e-12)


def check_vocab(student_logits: Tensor, teacher_logits: Tensor) -> None:
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise KimiStudentError(
            f"teacher vocabulary ({teacher_logits.shape[-1]}) differs from the student's "
            f"({student_logits.shape[-1]}): logit KD needs one tokenizer; use sequence-level KD (ce_teacher)"
        )


def cross_entropy(logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """logits (B, L, V) predict targets (B, L); positions with target -100 are ignored."""
    per = F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="none"
    )
    mask = (targets.flatten() != -100).float()
    w = mask if weights is None else mask * weights.flatten().float()
    return _wmean(per, w)


def _kl(log_a: Tensor, log_b: Tensor) -> Tensor:
    """KL(a || b) per position from log-probs (…, V) -> (…)."""
    return (log_a.exp() * (log_a - log_b)).sum(-1)


def _full(student_logits: Tensor, teacher_logits: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """(log p_teacher, log q_student) at temperature t over the full vocabulary."""
    check_vocab(student_logits, teacher_logits)
    return F.log_softmax(teacher_logits.float() / t, dim=-1), F.log_softmax(
        student_logits.float() / t, dim=-1
    )


def kl_forward(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, weights: Tensor | None = None
) -> Tensor:
    """T^2 * KL(p_teacher || q_student) over the full vocabulary, per position, weighted mean."""
    log_p, log_q = _full(student_logits, teacher_logits, temperature)
    return temperature**2 * _wmean(_kl(log_p, log_q), weights)


def kl_reverse(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, weights: Tensor | None = None
) -> Tensor:
    """T^2 * KL(q_student || p_teacher): mode-seeking."""
    log_p, log_q = _full(student_logits, teacher_logits, temperature)
    return temperature**2 * _wmean(_kl(log_q, log_p), weights)


def _jsd_from_logprobs(log_p: Tensor, log_q: Tensor, beta: float) -> Tensor:
    """Generalised JSD(beta) = beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q.
    beta = 0 or 1 degenerate to 0; beta = 0.5 is the symmetric JSD."""
    if not 0.0 <= beta <= 1.0:
        raise KimiStudentError(f"jsd beta must be in [0, 1], got {beta}")
    if beta in (0.0, 1.0):
        return torch.zeros(log_p.shape[:-1], dtype=log_p.dtype, device=log_p.device)
    log_m = torch.logsumexp(
        torch.stack([log_p + torch.log(torch.tensor(beta)), log_q + torch.log(torch.tensor(1 - beta))]), dim=0
    )
    return beta * _kl(log_p, log_m) + (1 - beta) * _kl(log_q, log_m)


def jsd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
    weights: Tensor | None = None,
) -> Tensor:
    """T^2 * generalised JSD(beta) between teacher p and student q, full vocabulary."""
    log_p, log_q = _full(student_logits, teacher_logits, temperature)
    return temperature**2 * _wmean(_jsd_from_logprobs(log_p, log_q, beta), weights)


# ---- sparse teachers: top-k logprobs with the tail as one extra bucket ------------------------------------


def _tail(top_logprobs: Tensor) -> Tensor:
    """log(1 - sum(exp(top))): the mass outside the top-k. Below 1e-6 it is rounding noise of float32
    logprobs (and would be inflated by re-tempering), so it counts as empty (1e-30)."""
    rest = 1.0 - top_logprobs.double().exp().sum(-1, keepdim=True)
    rest = torch.where(rest < 1e-6, torch.full_like(rest, 1e-30), rest)
    return rest.log().to(top_logprobs.dtype)


def sparse_teacher_logprobs(topk_logprobs: Tensor, server_temperature: float, temperature: float) -> Tensor:
    """(…, K) top-k logprobs returned at `server_temperature` -> (…, K+1) log-probs at `temperature`,
    the last bucket holding the tail mass.

    Logprobs at temperature s are z/s - logZ, so z = s * logprob up to a constant per position: multiply
    by s/T and renormalise over the K+1 buckets. The tail is re-tempered as one pseudo-token, an
    approximation (its mass is a sum over many tokens) that is exact at T = s.
    """
    lp = topk_logprobs.float()
    tail = _tail(lp)
    buckets = torch.cat([lp, tail], dim=-1)
    if server_temperature != temperature:
        buckets = F.log_softmax(buckets * (server_temperature / temperature), dim=-1)
    return buckets


def sparse_student_logprobs(student_logits: Tensor, topk_ids: Tensor, temperature: float) -> Tensor:
    """Student log-probs at `temperature` on the teacher's top-k ids, plus the rest as one tail bucket.
    student_logits (B, L, V), topk_ids (B, L, K) -> (B, L, K+1)."""
    if int(topk_ids.max()) >= student_logits.shape[-1]:
        raise KimiStudentError(
            f"teacher token id {int(topk_ids.max())} is outside the student's vocabulary "
            f"({student_logits.shape[-1]}): logit KD needs one tokenizer"
        )
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    top = log_q.gather(-1, topk_ids.long())
    return torch.cat([top, _tail(top)], dim=-1)


def _sparse(
    student_logits: Tensor, topk_ids: Tensor, topk_logprobs: Tensor, t: float, server_t: float
) -> tuple[Tensor, Tensor]:
    """(log p_teacher, log q_student) over the teacher's top-k plus one tail bucket, at temperature t."""
    return (
        sparse_teacher_logprobs(topk_logprobs, server_t, t),
        sparse_student_logprobs(student_logits, topk_ids, t),
    )


KD_TERMS = ("kl_forward", "kl_reverse", "jsd")


def _divergence(kind: str, log_p: Tensor, log_q: Tensor, beta: float) -> Tensor:
    """Per-token divergence of the teacher's `log_p` and the student's `log_q`, named as in `loss:`."""
    if kind == "kl_forward":
        return _kl(log_p, log_q)
    if kind == "kl_reverse":
        return _kl(log_q, log_p)
    if kind == "jsd":
        return _jsd_from_logprobs(log_p, log_q, beta)
    raise ValueError(f"unknown KD term {kind!r} (known: {', '.join(KD_TERMS)})")


def sparse_kd(
    kind: str,
    student_logits: Tensor,
    topk_ids: Tensor,
    topk_logprobs: Tensor,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    server_temperature: float = 1.0,
    weights: Tensor | None = None,
) -> Tensor:
    """T^2 * the `kind` divergence (kl_forward: KL(p||q), kl_reverse: KL(q||p), jsd: generalised JSD(beta))
    between teacher and student over the teacher's top-k plus one tail bucket."""
    log_p, log_q = _sparse(student_logits, topk_ids, topk_logprobs, temperature, server_temperature)
    return temperature**2 * _wmean(_divergence(kind, log_p, log_q, beta), weights)


# ---- process-step weights ----------------------------------------------------------------------------------


def process_weights(
    length: int,
    spans: dict[str, list[list[int]]],
    weights: dict[str, float],
    offset: int = 0,
    base: float = 1.0,
) -> Tensor:
    """Per-token weights (length,) for a sequence whose response starts at token `offset`.

    `spans` maps a kind (tool_name, json_args, integration) to token ranges [start, end) *within the
    response*; they land at offset + start .. offset + end, their true positions in the sequence (the
    original aligned them to the start of the sequence). Overlaps take the largest weight.
    """
    w = torch.full((length,), float(base))
    for kind, ranges in spans.items():
        value = float(weights.get(kind, base))
        for s, e in ranges:
            lo, hi = max(0, offset + s), min(length, offset + e)
            if lo < hi:
                w[lo:hi] = torch.maximum(w[lo:hi], torch.tensor(value))
    return w


def loss_positions(weights: Tensor) -> Tensor:
    """(B, L-1) bool: the positions t whose next token t+1 carries a loss (weight > 0). Position t's
    logits predict token t+1, so a token's weight, source and teacher rows belong to the position before
    it; padding and prompt tokens (weight 0) need no logits at all."""
    return weights[:, 1:] > 0


def at_loss_positions(batch: dict[str, Tensor], at: Tensor) -> dict[str, Tensor]:
    """The per-token tensors of `batch` (B, L, …) shifted by one and gathered at `at` -> (1, N, …): each
    position's target token, its weight and source, the teacher's top-k rows for that token."""
    keys = ("input_ids", "weights", "source", "topk_ids", "topk_logprobs")
    out: dict[str, Tensor] = {k: batch[k][:, 1:][at].unsqueeze(0) for k in keys if k in batch}
    return {**batch, **out}
