"""How a decoder picks its tokens from logits, one rule for every decoder (PyTorch's
eval/runners/speculative_hf, the Core ML decoder's export/kv_decode): the argmax, or a sample at a
temperature, and the check of speculative decoding. numpy, float64; a sample draws from a
`numpy.random.Generator`, so the same seed gives the same tokens on either side.

The check takes the target's logits at the K+1 positions of a call (row i predicts the token after draft i-1).
Greedy (temperature 0): the drafts the argmax agrees with are kept, then the argmax: the output is target-only
greedy's, token for token. Sampled: the rejection rule of speculative sampling (Leviathan et al. 2023, Chen et
al. 2023) keeps the output distribution the target's (not its draws): draft x, proposed from q, is kept with
probability min(1, p(x)/q(x)); a rejection samples from max(0, p - q) renormalised; all kept, one more from p.
A draft without a distribution (prompt lookup, an n-gram) is a point mass: q(x) = 1.
"""

from __future__ import annotations

import numpy as np


def probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / temperature) in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


def sample(weights: np.ndarray, rng: np.random.Generator | None) -> int:
    """An index drawn in proportion to `weights` (non-negative, not necessarily summing to 1); one uniform
    draw from `rng`, so a zero weight is never drawn."""
    c = np.cumsum(weights)
    return int(min(np.searchsorted(c, uniform(rng) * c[-1], side="right"), len(c) - 1))


def uniform(rng: np.random.Generator | None) -> float:
    """One draw in [0, 1)."""
    if rng is None:
        raise ValueError("sampling needs a random generator (numpy.random.Generator)")
    return float(rng.random())


def fitted(q: np.ndarray, size: int) -> np.ndarray:
    """A drafter's distribution over the target's `size` tokens: a drafter sharing the tokenizer may pad its
    vocabulary otherwise (its extra rows cut, missing ones zero)."""
    return q[:size] if len(q) >= size else np.concatenate([q, np.zeros(size - len(q))])


def spread(p: np.ndarray, ids: np.ndarray, size: int) -> np.ndarray:
    """`p`, a distribution over the tokens `ids` (a drafter's cut head), as one over `size` tokens (or past
    the largest id): zero off `ids`."""
    q = np.zeros(max(size, int(np.max(ids)) + 1))
    q[ids] = p
    return q


def pick(logits: np.ndarray, temperature: float, rng: np.random.Generator | None) -> int:
    """The next token from one row of logits: the argmax (the first of equals), or a sample at `temperature`."""
    return sample(probs(logits, temperature), rng) if temperature > 0 else int(np.argmax(logits))


def verify(
    logits: np.ndarray,
    drafts: list[int],
    q: np.ndarray | None,
    temperature: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[int, int]:
    """(drafts kept, the target's next token after them) from the target's logits (len(drafts) + 1 rows, or
    more). `q` (len(drafts), vocab): the distributions the drafts were sampled from; None: point masses."""
    for i, d in enumerate(drafts):
        if temperature <= 0:
            if (best := int(np.argmax(logits[i]))) != d:
                return i, best
            continue
        p = probs(logits[i], temperature)
        qi = fitted(q[i], p.size) if q is not None else np.eye(1, p.size, d)[0]  # past the vocabulary: 0
        if d < p.size and uniform(rng) * qi[d] < p[d]:  # kept with probability min(1, p(d) / q(d)); a draft
            continue  # past the target's vocabulary never is
        return i, sample(np.clip(p - qi, 0.0, None), rng)
    return len(drafts), pick(logits[len(drafts)], temperature, rng)
