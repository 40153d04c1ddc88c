"""The rules that pick tokens (kimi_student/sampling.py: speculative_hf and the Core ML decoder both use them), on
logits made by hand: greedy keeps the drafts the argmax agrees with and then gives the argmax; sampled, the
first token the check emits is distributed as the target's p, whatever the drafter's q (the rejection rule's
promise), including a drafter whose proposals are certain (prompt lookup: q a point mass)."""

from __future__ import annotations

import numpy as np
import pytest

from kimi_student.eval.runners.speculative_hf import PromptLookup
from kimi_student.sampling import pick, sample, spread, verify


def _logits(*rows: list[float]) -> np.ndarray:
    return np.log(np.array(rows, dtype=np.float64))


def test_greedy_keeps_the_agreeing_prefix_then_gives_the_argmax() -> None:
    rows = _logits([0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25])
    assert verify(rows, [1, 0, 2], None) == (3, 0)  # all kept, then the token after them
    assert verify(rows, [1, 2, 2], None) == (1, 0)  # the second disagrees: the argmax in its place
    assert verify(rows, [0, 0, 2], None) == (0, 1)
    assert verify(rows[:1], [], None) == (0, 1)  # no drafts: a plain step
    assert pick(np.array([1.0, 3.0, 3.0]), 0.0, None) == 1  # the first of equal maxima, as torch's argmax


def test_a_sample_never_draws_a_zero_weight_and_needs_a_generator() -> None:
    rng = np.random.default_rng(0)
    w = np.array([0.0, 2.0, 0.0, 1.0, 0.0])  # unnormalised
    draws = np.bincount([sample(w, rng) for _ in range(3_000)], minlength=5)
    assert draws[[0, 2, 4]].sum() == 0 and abs(draws[1] / 3_000 - 2 / 3) < 0.03, draws
    again = [sample(w, np.random.default_rng(5)) for _ in range(3)]
    assert again == [sample(w, np.random.default_rng(5))] * 3  # a seed gives its draw
    with pytest.raises(ValueError, match="random generator"):
        pick(np.zeros(3), 1.0, None)


def _first_token_frequencies(p: list[float], q: list[float] | None, trials: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    pt = np.array(p, dtype=np.float64)
    logits = np.stack([np.log(pt), np.log(pt)])  # row 0 checks the draft, row 1 follows it
    counts = np.zeros(len(p))
    for _ in range(trials):
        if q is None:
            d, qs = 2, None  # a certain proposal
        else:
            qt = np.array(q, dtype=np.float64)
            d, qs = sample(qt, rng), qt[None]
        kept, new = verify(logits, [d], qs, temperature=1.0, rng=rng)
        counts[d if kept else new] += 1
    return counts / trials


def test_sampled_verification_emits_the_targets_distribution() -> None:
    p = [0.5, 0.3, 0.15, 0.05]
    for q in ([0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], None, p):
        freq = _first_token_frequencies(p, q, 6_000)
        assert np.allclose(freq, p, atol=0.025), (q, freq)  # 4 sd at 6,000 draws


def test_a_drafter_with_another_vocabulary_size_keeps_the_targets_distribution() -> None:
    """A drafter sharing the tokenizer may pad its vocabulary otherwise: its q is fitted to the target's size
    (extra entries cut, missing ones zero), and a draft past the target's vocabulary is never kept."""
    p = np.array([0.5, 0.3, 0.15, 0.05])
    for q in ([0.1, 0.2, 0.3, 0.2, 0.2], [0.4, 0.6, 0.0]):  # one longer than the target's, one shorter
        rng, qt = np.random.default_rng(2), np.array(q)
        counts = np.zeros(len(p))
        for _ in range(6_000):
            d = sample(qt, rng)
            kept, new = verify(np.log(np.stack([p, p])), [d], qt[None], 1.0, rng)
            assert not (kept and d >= len(p))
            counts[d if kept else new] += 1
        assert np.allclose(counts / 6_000, p, atol=0.025), (q, counts)


def test_a_cut_heads_distribution_spreads_over_the_whole_vocabulary() -> None:
    """A drafter's head over a few token ids: its q puts each probability on its id and zero elsewhere, sized
    to the target's vocabulary, or past the largest id when that is smaller (verify then fits it)."""
    q = spread(np.array([0.25, 0.75]), np.array([4, 1]), 6)
    assert q.tolist() == [0.0, 0.75, 0.0, 0.0, 0.25, 0.0]
    assert spread(np.array([1.0]), np.array([7]), 3).tolist() == [0.0] * 7 + [1.0]


def test_a_drafter_equal_to_the_target_has_every_draft_kept() -> None:
    rng = np.random.default_rng(1)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.log(np.stack([p, p, p]))
    for _ in range(500):
        drafts = [sample(p, rng), sample(p, rng)]
        assert verify(logits, drafts, np.stack([p, p]), 1.0, rng)[0] == 2


def test_prompt_lookup_drafts_what_followed_the_latest_earlier_n_gram() -> None:
    pl = PromptLookup(max_ngram=2)
    seq = [5, 6, 7, 8, 9, 1, 6, 7, 3, 4, 6, 7]
    assert pl.propose(seq, 3, 0.0, None) == (
        [3, 4, 6],
        None,
    )  # "6 7" last seen before at 6, followed by 3 4 6
    assert pl.propose([1, 2, 3], 3, 0.0, None) == ([], None)  # nothing repeats
    assert pl.propose([4, 9, 4], 2, 0.0, None) == ([9, 4], None)  # a unigram when no bigram repeats


def test_first_of_takes_the_first_drafter_that_proposes() -> None:
    import torch

    from kimi_student.eval.runners.speculative_hf import FirstOf

    class Fixed:  # a drafter that always proposes the same, and keeps what it is handed
        def __init__(self, drafts: list[int]):
            self.drafts, self.seen = drafts, []

        def observe(self, states: torch.Tensor, start: int) -> None:
            self.seen.append(start)

        def propose(self, seq, k, temperature, rng):  # noqa: ANN001, ANN201
            return self.drafts[:k], None

    fallback = Fixed([7, 7, 7])
    both = FirstOf(PromptLookup(max_ngram=2, min_ngram=2), fallback)
    assert both.propose([1, 2, 3, 1, 2], 3, 0.0, None) == ([3, 1, 2], None)  # "1 2" repeats: the lookup
    assert both.propose([4, 9, 4], 2, 0.0, None) == ([7, 7], None)  # only a unigram repeats: the fallback
    both.observe(torch.zeros(2, 4), 5)
    assert fallback.seen == [5]
