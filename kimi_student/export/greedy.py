"""Deterministic greedy decoding with a saved full-sequence Core ML package, run in the numpy MIL executor.

A `seq<S>.mlpackage` maps input_ids (1, S) to logits (1, S, V). The model is causal and masked keys get
exactly zero attention weight, so the logits at position i depend on tokens 0..i only: the positions after
the sequence may hold anything (padding, or a guess). Plain greedy runs one forward per new token and
reads the argmax at the last real position.

With a drafter, each forward also checks a guessed continuation placed after the sequence (speculative
decoding with greedy verification): the argmax at every guessed position is the greedy token given all
tokens before it, so tokens are accepted while they equal the guess, plus the first one that does not.
The output is exactly plain greedy's (tests compare them), in fewer forwards. The drafter here is n-gram
lookup: in the sequence itself (a call copies the request) and in a corpus of token sequences (the
training transcripts: the call syntax).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kimi_student.export.errors import MilExecError
from kimi_student.export.mil import MilProgram
from kimi_student.export.parity import package_seq_len


@dataclass
class DecodeStats:
    """Counters over every forward a decoder ran: how many, how long, and any bad outputs."""

    forwards: int = 0
    new_tokens: int = 0
    forward_seconds: list[float] = field(default_factory=list)
    nonfinite_forwards: int = 0  # forwards with a NaN/inf logit at a real position
    zero_row_forwards: int = 0  # forwards where some real position's logits are all zero
    truncated: int = 0  # sequences that reached the package length before a stop token
    prefill_tokens: int = 0  # prompt tokens computed (stateful decoder)
    prefill_forwards: int = 0  # the forwards that computed them
    cached_tokens: int = 0  # prompt tokens whose keys and values were already cached (stateful decoder)
    drafted: int = 0  # draft tokens checked (stateful decoder with a drafter)
    accepted: int = 0  # of them, those kept
    rejected: int = 0  # checks that rejected a draft, one each (alpha per reached draft: accepted / both)

    def record(self, seconds: float, real: np.ndarray) -> None:
        """One forward of `seconds` whose real positions' logits are `real` (positions, V)."""
        self.forward_seconds.append(seconds)
        self.forwards += 1
        if not np.isfinite(real).all():
            self.nonfinite_forwards += 1
        if (np.abs(real).max(axis=-1) == 0).any():
            self.zero_row_forwards += 1

    def to_json(self) -> dict[str, Any]:
        ms = np.asarray(self.forward_seconds) * 1000.0
        return {
            "forwards": self.forwards,
            "new_tokens": self.new_tokens,
            "tokens_per_forward": self.new_tokens / self.forwards if self.forwards else None,
            "forward_ms_median": float(np.median(ms)) if ms.size else None,
            "forward_ms_p90": float(np.percentile(ms, 90)) if ms.size else None,
            "forward_seconds_total": float(ms.sum() / 1000.0),
            "nonfinite_forwards": self.nonfinite_forwards,
            "zero_row_forwards": self.zero_row_forwards,
            "truncated": self.truncated,
            "prefill_tokens": self.prefill_tokens,
            "cached_tokens": self.cached_tokens,
        }


class NgramDrafter:
    """Guesses the next tokens by n-gram lookup, longest n first: in the sequence so far (its most recent
    earlier occurrence), then in a corpus (the first occurrence). Deterministic."""

    def __init__(self, corpus: Iterable[list[int]], max_n: int = 3, k: int = 16):
        self.max_n, self.k = max_n, k
        self.index: dict[tuple[int, ...], list[int]] = {}
        for seq in corpus:
            for n in range(1, max_n + 1):
                for i in range(len(seq) - n):
                    self.index.setdefault(tuple(seq[i : i + n]), seq[i + n : i + n + k])

    def propose(self, seq: list[int]) -> list[int]:
        for n in range(min(self.max_n, len(seq)), 0, -1):
            tail = seq[-n:]
            for i in range(len(seq) - n - 1, -1, -1):  # the sequence itself: a call copies its request
                if seq[i : i + n] == tail:
                    return seq[i + n : i + n + self.k]
            hit = self.index.get(tuple(tail))
            if hit:
                return list(hit)
        return []


def padded_input(tokens: list[int], s: int, pad_id: int) -> np.ndarray:
    """input_ids (1, S) int32: the tokens, then padding (which the causal model never looks back at)."""
    x = np.full((1, s), pad_id, dtype=np.int32)
    x[0, : len(tokens)] = tokens[:s]
    return x


def _forward(prog: MilProgram, tokens: list[int], s: int, pad_id: int, stats: DecodeStats) -> np.ndarray:
    """Logits (len(tokens), V) of the real positions; counts bad outputs in `stats`."""
    t0 = time.perf_counter()
    logits = prog.predict({"input_ids": padded_input(tokens, s, pad_id)})["logits"]
    real = np.asarray(logits)[0, : len(tokens)]
    stats.record(time.perf_counter() - t0, real)
    return real


def greedy_decode(
    prog: MilProgram,
    prompt: list[int],
    stop_ids: Iterable[int],
    max_new_tokens: int,
    drafter: NgramDrafter | None = None,
    pad_id: int = 0,
    stats: DecodeStats | None = None,
) -> list[int]:
    """Greedy continuation of `prompt` (stop token included when reached) through a full-sequence package.

    Stops at a stop token, after `max_new_tokens`, or when the sequence fills the package's length S.
    """
    s = package_seq_len(prog)
    if not prompt or len(prompt) > s:
        raise MilExecError(f"prompt of {len(prompt)} tokens does not fit the package's {s} positions")
    stats = stats if stats is not None else DecodeStats()
    stops = set(stop_ids)
    seq = list(prompt)
    limit = min(s, len(prompt) + max_new_tokens)
    while len(seq) < limit:
        guess = drafter.propose(seq)[: limit - len(seq) - 1] if drafter else []
        logits = _forward(prog, seq + guess, s, pad_id, stats)
        # argmax at position len(seq)-1+j is the greedy token after seq + guess[:j]
        preds = logits[len(seq) - 1 :].argmax(axis=-1)
        for j, tok in enumerate(int(p) for p in preds):
            seq.append(tok)
            if tok in stops or len(seq) >= limit or j >= len(guess) or tok != guess[j]:
                break
        if seq[-1] in stops:
            break
    else:
        stats.truncated += int(len(seq) >= s and seq[-1] not in stops)
    stats.new_tokens += len(seq) - len(prompt)
    return seq[len(prompt) :]
