"""Greedy (and sampled) decoding with the stateful decoder package (`decode<C>.mlpackage`), as a device runs a model:
the prompt fills the KV cache in chunks, then one token per call, or a drafted continuation checked in one
call, all in the numpy MIL executor.

The package holds one function per query length Q (`main`: Q = 1; `chunk<Q>`: Q > 1), sharing weights
and the two cache states. A call writes its Q tokens' keys and values at positions p .. p+Q-1 and returns
their logits; a query never sees entries after its own position. So a short chunk is padded (the padding's
entries lie after every real token and are overwritten before anything reads them), and a rejected draft
needs no undo: the positions it wrote are simply written again.

A `KVSession` is one conversation's cache: the tool loop's next turn starts with the same tokens, so only
what was appended (the end of the model's turn, the tool response) is computed again. Sessions beyond
`max_sessions` are dropped, least recently used first (SmolLM2-135M, 1,024 positions: 24 MB each); a
dropped conversation starts again from position 0, with the same output. A session is reused
only by a prompt that starts with the whole prompt the session began with, i.e. by the same conversation:
an item's output never depends on which items ran before it in the process (reports stay byte-identical
across workers and shards).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from kimi_student.chat.template import StopRule
from kimi_student.export.errors import MilExecError
from kimi_student.export.greedy import DecodeStats
from kimi_student.sampling import pick, verify


@dataclass
class KVSession:
    root: tuple[int, ...]  # the prompt the conversation started with
    ids: list[int]  # the tokens whose keys and values the state holds, position by position
    state: dict[str, np.ndarray]
    hidden: np.ndarray | None = None  # (context, C): the final hidden states there, when the package has them


INPUTS = {"input_ids": ["input_ids", "position"], "next_ids": ["feats", "next_ids", "position"]}


def function_q_len(name: str, prog: Any, ids: str = "input_ids") -> int:
    """Query length of one decoder function (a feature drafter's: ids "next_ids"): its ids' second
    dimension."""
    shape = prog.input_shape(ids)
    if len(shape) != 2 or prog.input_names != INPUTS[ids] or not prog.state_names:
        raise MilExecError(f"{prog.path}: function {name!r} is not a stateful decoder")
    return int(shape[1])


def smallest_function(programs: dict[int, Any], n: int, position: int, context: int) -> int:
    """The shortest query length (of `programs`, sorted) that holds n tokens at `position` in the context."""
    q = next((q for q in programs if q >= n and position + q <= context), None)
    if q is None:
        raise MilExecError(
            f"{n} tokens at position {position} do not fit a function within the {context} context"
        )
    return q


class KVDecoder:
    """Greedy (or sampled) decoding through a stateful decoder's functions (Q -> program). Deterministic
    (sampled: for a seed)."""

    def __init__(self, programs: dict[int, Any], context: int, pad_id: int, max_sessions: int = 32):
        if 1 not in programs:
            raise MilExecError("a stateful decoder needs its one-token function (main)")
        self.programs = dict(sorted(programs.items()))
        self.context, self.pad_id, self.max_sessions = context, pad_id, max_sessions
        self.sessions: OrderedDict[tuple[int, ...], KVSession] = OrderedDict()  # least recently used first

    @property
    def max_draft(self) -> int:
        """Longest draft checked at once: what the smallest chunk holds beside the pending token (a call
        costs more the more tokens it takes, and a long draft is seldom accepted whole); 0 without one."""
        return min((q for q in self.programs if q > 1), default=1) - 1

    # -- sessions --------------------------------------------------------------------------------------

    def session(self, prompt: list[int]) -> KVSession:
        """The conversation's session (its cache trimmed to what `prompt` shares), or a fresh one."""
        for root, s in reversed(self.sessions.items()):
            if len(root) <= len(prompt) and tuple(prompt[: len(root)]) == root:
                self.sessions.move_to_end(root)
                # keep what the prompt shares, but feed its last token again: its logits are needed
                keep, limit = 0, min(len(s.ids), len(prompt) - 1)
                while keep < limit and s.ids[keep] == prompt[keep]:
                    keep += 1
                del s.ids[keep:]
                return s
        state = (
            self.sessions.popitem(last=False)[1].state  # stale entries are masked: no zeroing needed
            if len(self.sessions) >= self.max_sessions
            else self.programs[1].new_state()
        )
        s = KVSession(tuple(prompt), [], state)
        self.sessions[s.root] = s
        return s

    def clear(self) -> None:
        self.sessions.clear()

    # -- calls -------------------------------------------------------------------------------------------

    def _call(self, s: KVSession, tokens: list[int], stats: DecodeStats) -> np.ndarray:
        """Logits (len(tokens), V) of `tokens` at positions len(s.ids).. ; the smallest function that holds
        them and fits the context, padded. The caller sets s.ids to what stays valid."""
        p, n = len(s.ids), len(tokens)
        q = smallest_function(self.programs, n, p, self.context)
        x = np.full((1, q), self.pad_id, dtype=np.int32)
        x[0, :n] = tokens
        t0 = time.perf_counter()
        out = self.programs[q].predict({"input_ids": x, "position": np.array([p], np.int32)}, s.state)
        real = np.asarray(out["logits"])[0, :n]
        stats.record(time.perf_counter() - t0, real)
        if "hidden" in out:  # a feature drafter reads them (`export coreml --drafter`)
            h = np.asarray(out["hidden"])[0, :n]
            if s.hidden is None:
                s.hidden = np.zeros((self.context, h.shape[-1]), np.float32)
            s.hidden[p : p + n] = h
        return real

    def prefill(self, s: KVSession, tokens: list[int], stats: DecodeStats) -> np.ndarray:
        """Feed `tokens` after s.ids in as few calls as the functions allow; the last token's logits."""
        logits = np.empty(0)
        while tokens:
            room = [q for q in self.programs if len(s.ids) + q <= self.context]
            q = room[-1] if len(tokens) >= room[-1] else next(q for q in room if q >= len(tokens))
            part, tokens = tokens[:q], tokens[q:]
            logits = self._call(s, part, stats)[-1]
            s.ids.extend(part)
            stats.prefill_tokens += len(part)
            stats.prefill_forwards += 1
        return logits

    def continuation_logits(
        self, prompt: list[int], conts: list[list[int]], stats: DecodeStats | None = None
    ) -> list[np.ndarray]:
        """For each continuation, the logits (len(cont), V) that predict its tokens after `prompt`: the prompt
        less its last token is cached once, then each continuation is one call from there (its entries are
        written over by the next one, as a rejected draft's are)."""
        if not prompt or any(len(prompt) + len(c) - 1 > self.context for c in conts):
            raise MilExecError(
                f"a continuation of the {len(prompt)}-token prompt exceeds the {self.context} context"
            )
        stats = stats if stats is not None else DecodeStats()
        s = self.session(prompt)
        self.prefill(s, prompt[len(s.ids) : -1], stats)
        out = []
        for c in conts:
            out.append(self._call(s, [prompt[-1], *c[:-1]], stats)[: len(c)])
            s.ids = list(prompt[:-1])
        return out

    # -- decoding ----------------------------------------------------------------------------------------

    def greedy(
        self,
        prompt: list[int],
        stop: StopRule,
        max_new_tokens: int,
        drafter: Any = None,
        stats: DecodeStats | None = None,
    ) -> list[int]:
        """Greedy continuation of `prompt` (its stop token included): stops at `stop`, after
        `max_new_tokens`, or when the sequence fills the context. `drafter`: an NgramDrafter, or a feature
        drafter (export/feature_draft.CoreMLFeatureDraft) that drafts from the session's hidden states (a
        decoder exported with it)."""
        return self._decode(prompt, stop, max_new_tokens, drafter, stats, 0.0, None)

    def sample(
        self,
        prompt: list[int],
        stop: StopRule,
        max_new_tokens: int,
        temperature: float,
        rng: np.random.Generator,
        drafter: Any = None,
        stats: DecodeStats | None = None,
    ) -> list[int]:
        """A continuation sampled at `temperature` (> 0) with `rng`, stopping as `greedy` does. With a drafter,
        its drafts are checked by the rejection rule (kimi_student/sampling.verify): the output is distributed
        as plain sampling's (not drawn alike: the draws differ); the same seed gives the same tokens."""
        if not temperature > 0:
            raise MilExecError(f"temperature {temperature}: sampling needs one above 0 (greedy: `greedy`)")
        return self._decode(prompt, stop, max_new_tokens, drafter, stats, temperature, rng)

    def _decode(
        self,
        prompt: list[int],
        stop: StopRule,
        max_new_tokens: int,
        drafter: Any,
        stats: DecodeStats | None,
        temperature: float,
        rng: np.random.Generator | None,
    ) -> list[int]:
        if not prompt or len(prompt) >= self.context:
            raise MilExecError(
                f"prompt of {len(prompt)} tokens does not fit the {self.context}-token context"
            )
        stats = stats if stats is not None else DecodeStats()
        s = self.session(prompt)
        stats.cached_tokens += len(s.ids)
        seq, new = list(prompt), []
        last = self.prefill(s, prompt[len(s.ids) :], stats)
        pending, vocab = pick(last, temperature, rng), len(last)

        def done() -> bool:
            return stop.stops(new) or len(new) >= max_new_tokens or len(seq) >= self.context

        while True:
            seq.append(pending)
            new.append(pending)
            if done():
                break
            p = len(seq) - 1  # the pending token's position: not in the cache yet
            room = min(self.max_draft, max(q for q in self.programs if p + q <= self.context) - 1)
            q = None  # the drafts' distributions (sampled feature drafts); None: point masses
            if not drafter or not room:
                guess = []
            elif getattr(drafter, "reads_states", False):  # export/feature_draft.CoreMLFeatureDraft
                if s.hidden is None:
                    raise MilExecError("a feature drafter needs a decoder exported with it (--drafter)")
                guess, q = drafter.propose(seq, s.hidden[:p], room, temperature, rng, vocab)
            else:
                guess = drafter.propose(seq)[:room]
            kept, pending = verify(self._call(s, [pending, *guess], stats), guess, q, temperature, rng)
            accepted = 0
            for tok in guess[:kept]:
                seq.append(tok)
                new.append(tok)
                accepted += 1
                if done():
                    break
            stats.rejected += int(accepted == kept < len(guess))  # a check that reached a rejected draft
            stats.drafted += len(guess)
            stats.accepted += accepted
            s.ids = seq[: p + 1 + accepted]  # a rejected guess's entries are written again later
            if done():
                break
        stats.truncated += int(len(seq) >= self.context and not stop.stops(new))
        stats.new_tokens += len(new)
        return new
