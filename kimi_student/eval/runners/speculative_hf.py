"""Speculative decoding of an HF causal LM, one conversation at a time (batch 1).

A drafter proposes K tokens; the target checks all of them in one forward of K+1 positions and keeps the
longest prefix it agrees with, plus one token of its own (the correction at the first disagreement, or the
token after the last draft when every one was kept). Rejected positions are dropped from the target's KV
cache (`crop`), never copied. Greedy: the output is the target's greedy output token for token (the checks
are argmaxes of the target's own logits; in fp32 a K+1-row forward rounds as the one-row steps do, which a
test holds us to). Sampled (`temperature > 0`, a `numpy.random.Generator`): the rejection rule of speculative
sampling keeps the output distribution the target's. Both rules are kimi_student/sampling.py's, which the Core
ML decoder (export/kv_decode) shares.

Drafters: `ModelDrafter` (a small HF causal LM with its own cache), `FeatureDraft` (a feature drafter that
reads the target's final hidden states: models/feature_drafter.py), `PromptLookup` (the n-gram that ends the
sequence, found earlier in it: what follows it there is the draft; no model, no training).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from kimi_student.chat.template import StopRule
from kimi_student.models.feature_drafter import KVCache
from kimi_student.sampling import pick, probs, sample, spread, verify


@dataclass
class SpecStats:
    """α = accepted / proposed drafts; τ = tokens emitted per target call (the bonus token included).

    `alpha_reached` is the other reading of α (Leviathan et al.'s acceptance rate, the one under which
    τ = (1 − α^(K+1)) / (1 − α)): kept drafts over the drafts the check reached, a check reaching its drafts up
    to and including the first one it rejects (those after it were never judged)."""

    target_calls: int = 0
    proposed: int = 0
    accepted: int = 0
    rejected: int = 0  # checks that rejected a draft: one each
    emitted: int = 0
    checks: dict[int, int] = field(
        default_factory=dict
    )  # drafts in a check -> checks (prompt lookup may have none)

    @property
    def alpha(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def alpha_reached(self) -> float:
        reached = self.accepted + self.rejected
        return self.accepted / reached if reached else 0.0

    @property
    def tau(self) -> float:
        return self.emitted / self.target_calls if self.target_calls else 0.0

    def add(self, other: SpecStats) -> None:
        for f in ("target_calls", "proposed", "accepted", "rejected", "emitted"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        for n, c in other.checks.items():
            self.checks[n] = self.checks.get(n, 0) + c


class Drafter(Protocol):
    def propose(
        self, seq: list[int], k: int, temperature: float, rng: np.random.Generator | None
    ) -> tuple[list[int], np.ndarray | None]:
        """Up to `k` tokens to follow `seq`, and their proposal distributions (k, vocab) where they were
        sampled from one (None: each draft is certain, a point mass)."""
        ...


def rows(logits: torch.Tensor) -> np.ndarray:
    """Logits as the rules read them (numpy; fp32 as computed: the argmax is the model's own)."""
    return logits.float().numpy()


def cached_forward(
    model: Any, cache: Any, ids: list[int], start: int, keep: int | None = None, states: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (len(ids) rows, or the last `keep`) of `ids` at positions start.. after what `cache` holds,
    which they join; with `states`, also the final hidden states there (what the head reads: len(ids) rows)."""
    extra = {"logits_to_keep": keep} if keep else {}
    out = model(
        input_ids=torch.tensor([ids]),
        position_ids=torch.arange(start, start + len(ids))[None],
        cache=cache,
        use_cache=True,
        output_hidden_states=states,
        **extra,
    )
    return out.logits[0], (out.hidden_states[-1][0] if states else None)


class PromptLookup:
    """Prompt lookup decoding: the longest n-gram (n <= `max_ngram`) ending the sequence that also occurs
    earlier in it; the tokens after its latest earlier occurrence are the draft."""

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1):
        self.max_ngram, self.min_ngram = max_ngram, min_ngram

    def propose(
        self, seq: list[int], k: int, temperature: float, rng: np.random.Generator | None
    ) -> tuple[list[int], np.ndarray | None]:
        for n in range(min(self.max_ngram, len(seq) - 1), self.min_ngram - 1, -1):
            tail = seq[-n:]
            for start in range(len(seq) - n - 1, -1, -1):
                if seq[start : start + n] == tail:
                    return seq[start + n : start + n + k], None
        return [], None


class ModelDrafter:
    """A small causal LM sharing the target's tokenizer, greedy or sampled, with a KV cache of its own that
    keeps the tokens it has in common with the next sequence it is asked about."""

    def __init__(self, model: Any):
        self.model = model.eval()
        self.cache: Any = None
        self.tokens: list[int] = []  # what the cache holds
        self.calls = 0  # forwards of the drafter

    def _forward(self, ids: list[int]) -> torch.Tensor:
        from transformers import DynamicCache

        if self.cache is None:
            self.cache = DynamicCache(config=self.model.config)
        self.calls += 1
        out = cached_forward(self.model, self.cache, ids, len(self.tokens), keep=1)[0][-1]
        self.tokens += ids
        return out

    @torch.no_grad()
    def propose(
        self, seq: list[int], k: int, temperature: float, rng: np.random.Generator | None
    ) -> tuple[list[int], np.ndarray | None]:
        if k <= 0:
            return [], None
        keep = 0
        while keep < min(len(self.tokens), len(seq) - 1) and self.tokens[keep] == seq[keep]:
            keep += 1
        if keep < len(self.tokens):
            self.cache.crop(keep - len(self.tokens))
            del self.tokens[keep:]
        logits = self._forward(seq[keep:])
        drafts: list[int] = []
        dists = []
        for i in range(k):
            if temperature > 0:
                dists.append(probs(rows(logits), temperature))
                drafts.append(sample(dists[-1], rng))
            else:
                drafts.append(int(logits.argmax()))
            if i + 1 < k:
                logits = self._forward([drafts[-1]])
        return drafts, (np.stack(dists) if dists else None)


class FeatureDraft:
    """Drafts with a feature drafter (models/feature_drafter.py) from the target's final hidden states,
    which `speculative_decode` hands to `observe` after each target call. Its cache holds the pairs
    (f_j, token j+1) of the target's own states; the pairs of predicted states that drafting adds are
    cropped before the next proposal.

    `confidence`: drafting stops before a draft whose chance of being kept, as the drafter sees it (the
    product of its top probabilities over the drafts so far), falls under it; 0 always drafts k (a check's
    cost grows with its drafts, and a draft the drafter doubts is seldom kept: EAGLE-2's dynamic draft)."""

    def __init__(self, model: Any, confidence: float = 0.0):
        self.model = model.eval()
        self.confidence = confidence
        self.cache = KVCache()
        self.ids, self.head = model.vocab_ids, model.head  # the cut head, and the prompt's tokens
        self.states = torch.empty(0, model.cfg.hidden_size)  # the target's, position by position
        self.fed = 0  # pairs in the cache made of the target's states
        self.calls = 0  # forwards of the drafter

    def observe(self, states: torch.Tensor, start: int) -> None:
        """The target's final hidden states at positions start.. (what it computed for kept tokens);
        states after them are dropped, and start 0 begins a new sequence."""
        if start == 0:
            self.cache, self.fed = KVCache(), 0
        self.states = torch.cat([self.states[:start], states.float()])
        self.fed = min(self.fed, start)

    @torch.no_grad()
    def propose(
        self, seq: list[int], k: int, temperature: float, rng: np.random.Generator | None
    ) -> tuple[list[int], np.ndarray | None]:
        n = len(self.states)
        if k <= 0 or len(seq) != n + 1:  # the target's states cover every token but the newest
            return [], None
        if self.fed == 0:  # a new sequence: its prompt's tokens join the head (answers copy from requests)
            self.ids, self.head = self.model.head_with(seq)
        self.cache.crop(self.fed)
        ids = torch.tensor(seq)
        feats = self.model(
            self.states[None, self.fed :], ids[None, self.fed + 1 :], torch.arange(self.fed, n), self.cache
        )[:, -1:]
        self.fed, self.calls = n, self.calls + 1
        drafts: list[int] = []
        dists = []
        sure = 1.0
        for i in range(k):
            logits = feats[0, -1] @ self.head.T
            if self.confidence > 0:
                sure *= float(torch.softmax(logits, -1).max())
                if sure < self.confidence:
                    break
            if temperature > 0:  # the cut head's distribution, over the target's whole vocabulary
                dists.append(
                    spread(probs(rows(logits), temperature), self.ids.numpy(), self.model.cfg.vocab_size)
                )
                drafts.append(sample(dists[-1], rng))
            else:
                drafts.append(int(self.ids[int(logits.argmax())]))
            if i + 1 < k:
                feats = self.model(feats, torch.tensor([[drafts[-1]]]), torch.tensor([n + i]), self.cache)
                self.calls += 1
        return drafts, (np.stack(dists) if dists else None)


class FirstOf:
    """The drafts of the first drafter that proposes any (e.g. a prompt lookup that found a long match, else a
    feature drafter); each drafter that reads the target's states is handed them."""

    def __init__(self, *drafters: Any):
        self.drafters = drafters
        self.observers = [d for d in drafters if hasattr(d, "observe")]

    def observe(self, states: torch.Tensor, start: int) -> None:
        for d in self.observers:
            d.observe(states, start)

    def propose(
        self, seq: list[int], k: int, temperature: float, rng: np.random.Generator | None
    ) -> tuple[list[int], np.ndarray | None]:
        for d in self.drafters:
            drafts, q = d.propose(seq, k, temperature, rng)
            if drafts:
                return drafts, q
        return [], None


@torch.no_grad()
def speculative_decode(
    target: Any,
    drafter: Drafter,
    prompt: list[int],
    stop: StopRule,
    max_new: int,
    k: int = 3,
    temperature: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[list[int], SpecStats]:
    """The target's tokens after `prompt` (at most `max_new`, up to and including the stop) and the counts."""
    from transformers import DynamicCache

    stats = SpecStats()
    cache = DynamicCache(config=target.config)
    context = int(getattr(target.config, "max_position_embeddings", 1 << 30))

    observe = getattr(drafter, "observe", None)  # a feature drafter reads the target's hidden states
    logits, states = cached_forward(target, cache, prompt, 0, keep=1, states=observe is not None)
    if observe is not None:
        observe(states, 0)
    out = [pick(rows(logits[-1]), temperature, rng)]
    stats.target_calls = stats.emitted = 1
    while not stop.stops(out) and len(out) < max_new:
        seq = prompt + out
        room = min(k, max_new - len(out) - 1, context - len(seq) - 1)
        drafts, q = drafter.propose(seq, room, temperature, rng) if room > 0 else ([], None)
        # the newest token is not in the target's cache yet: it goes in first, then the drafts
        logits, states = cached_forward(
            target, cache, [seq[-1], *drafts], len(seq) - 1, states=observe is not None
        )
        kept, new = verify(rows(logits), drafts, q, temperature, rng)
        if observe is not None:
            observe(states[: kept + 1], len(seq) - 1)  # the newest token's and the kept drafts' states
        stats.target_calls += 1
        stats.proposed += len(drafts)
        stats.checks[len(drafts)] = stats.checks.get(len(drafts), 0) + 1
        stats.accepted += kept
        stats.rejected += kept < len(drafts)
        if len(drafts) > kept:  # the rejected drafts' keys and values go; the next write overwrites them
            cache.crop(kept - len(drafts))
        for t in [*drafts[:kept], new]:
            out.append(t)
            stats.emitted += 1
            if stop.stops(out) or len(out) >= max_new:
                break
    return out, stats
