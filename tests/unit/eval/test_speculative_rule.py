"""The verification rule of speculative decoding (eval/runners/speculative_hf.verify), on logits made by hand:
greedy keeps the drafts the argmax agrees with and then gives the argmax; sampled, the first token it emits
is distributed as the target's p, whatever the drafter's q (the rejection rule's promise), including a
drafter whose proposals are certain (prompt lookup: q a point mass)."""

from __future__ import annotations

import torch

from kimi_student.eval.runners.speculative_hf import PromptLookup, verify


def _logits(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).log()


def test_greedy_keeps_the_agreeing_prefix_then_gives_the_argmax() -> None:
    rows = _logits([0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25])
    assert verify(rows, [1, 0, 2], None) == (3, 0)  # all kept, then the token after them
    assert verify(rows, [1, 2, 2], None) == (1, 0)  # the second disagrees: the argmax in its place
    assert verify(rows, [0, 0, 2], None) == (0, 1)
    assert verify(rows[:1], [], None) == (0, 1)  # no drafts: a plain step


def _first_token_frequencies(p: list[float], q: list[float] | None, trials: int) -> torch.Tensor:
    rng = torch.Generator().manual_seed(0)
    pt = torch.tensor(p, dtype=torch.float64)
    logits = torch.stack([pt.log(), pt.log()])  # row 0 checks the draft, row 1 follows it
    counts = torch.zeros(len(p))
    for _ in range(trials):
        if q is None:
            d, qs = 2, None  # a certain proposal
        else:
            qt = torch.tensor(q, dtype=torch.float64)
            d, qs = int(torch.multinomial(qt, 1, generator=rng)), qt[None]
        kept, new = verify(logits, [d], qs, temperature=1.0, rng=rng)
        counts[d if kept else new] += 1
    return counts / trials


def test_sampled_verification_emits_the_targets_distribution() -> None:
    p = [0.5, 0.3, 0.15, 0.05]
    for q in ([0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], None):
        freq = _first_token_frequencies(p, q, 6_000)
        assert torch.allclose(freq, torch.tensor(p, dtype=freq.dtype), atol=0.025), (
            q,
            freq,
        )  # 4 sd at 6,000 draws


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
