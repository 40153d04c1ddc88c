"""Drafting with the exported feature drafter (drafter<C>.mlpackage, `export coreml --drafter`) in the MIL
executor, for `KVDecoder.greedy` and `sample`: the Core ML twin of eval/runners/speculative_hf.FeatureDraft.

The Worker's decoder package then also returns its final hidden states, which the session keeps position by
position; the drafter reads them. Sampled (`KVDecoder.sample`), it drafts from its head at the temperature
and hands the decoder those distributions for the rejection rule. Its cache holds the pairs (Worker state j,
token j+1) at positions j, fed in as few calls as its functions allow; the pairs that drafting adds (its own
predicted states) lie after them and are written over by the next real pairs, as a rejected draft's are in
the Worker's cache.
A conversation that starts with the tokens the drafter last fed keeps those pairs. The head is the cut
vocabulary the drafter was trained with (`vocab_ids` in the manifest), without the prompt's own tokens
that the PyTorch drafter adds: a package's head is fixed. `confidence` stops drafting as the PyTorch
drafter's does (fewer drafts: a smaller, cheaper check function).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kimi_student.export.errors import MilExecError
from kimi_student.sampling import probs, sample, spread


class CoreMLFeatureDraft:
    reads_states = True  # KVDecoder.greedy hands it the session's hidden states

    def __init__(self, programs: dict[int, Any], vocab_ids: list[int], context: int, confidence: float = 0.0):
        if 1 not in programs:
            raise MilExecError("a drafter package needs its one-token function (main)")
        self.programs = dict(sorted(programs.items()))
        self.vocab = np.asarray(vocab_ids, dtype=np.int64)
        self.context, self.confidence = context, confidence
        self.state = self.programs[1].new_state()
        self.tokens: list[int] = []  # seq[: fed + 1]: the pairs in the cache are (states[j], tokens[j + 1])
        self.calls = 0

    @classmethod
    def load(cls, package: Path, confidence: float = 0.0) -> CoreMLFeatureDraft:
        from kimi_student.export.kv_decode import function_q_len
        from kimi_student.export.mil import MilProgram
        from kimi_student.manifest import package_entry

        entry = package_entry(package)
        if entry.get("kind") != "drafter":
            raise MilExecError(f"{package}: not a drafter package of its folder's manifest")
        programs = {
            function_q_len(name, p, "next_ids"): p for name, p in MilProgram.load_all(package).items()
        }
        return cls(programs, entry["vocab_ids"], int(entry["context"]), confidence)

    def _call(self, feats: np.ndarray, ids: list[int], position: int) -> tuple[np.ndarray, np.ndarray]:
        """(states, logits) of the pairs at positions position..; the smallest function that holds them."""
        from kimi_student.export.kv_decode import smallest_function

        n = len(ids)
        q = smallest_function(self.programs, n, position, self.context)
        f = np.zeros((1, q, feats.shape[-1]), np.float32)
        f[0, :n] = feats
        x = np.zeros((1, q), np.int32)
        x[0, :n] = ids
        out = self.programs[q].predict(
            {"feats": f, "next_ids": x, "position": np.array([position], np.int32)}, self.state
        )
        self.calls += 1
        return np.asarray(out["states"])[0, :n], np.asarray(out["logits"])[0, :n]

    def propose(
        self,
        seq: list[int],
        states: np.ndarray,
        k: int,
        temperature: float = 0.0,
        rng: np.random.Generator | None = None,
        vocab_size: int = 0,
    ) -> tuple[list[int], np.ndarray | None]:
        """Up to `k` drafts after `seq`, from the Worker's states at every position but the newest: each the
        head's argmax, or (`temperature` > 0) a sample from the head at that temperature; then also their
        distributions over the Worker's `vocab_size` tokens (the rejection rule's q), else None."""
        n = len(seq) - 1
        if k <= 0 or len(states) != n or n < 1:
            return [], None
        common = 0  # pair j is still valid while tokens 0..j+1 are unchanged (the states follow the tokens)
        while common < min(len(self.tokens), len(seq)) and self.tokens[common] == seq[common]:
            common += 1
        fed = min(max(common - 1, 0), n - 1)  # the last pair is fed again if nothing is new: its prediction
        self.tokens = []  # until the pairs are in
        while fed < n:  # the new pairs, in chunks the functions take
            q = min(max(q for q in self.programs if fed + q <= self.context), n - fed)
            pred, logits = self._call(states[fed : fed + q], seq[fed + 1 : fed + q + 1], fed)
            fed += q
        self.tokens = list(seq)
        drafts: list[int] = []
        dists = []
        state, row = pred[-1], logits[-1]
        sure = 1.0
        for i in range(min(k, self.context - n)):
            if self.confidence > 0:
                sure *= float(probs(row, 1.0).max())
                if sure < self.confidence:
                    break
            if temperature > 0:  # the cut head's distribution, over the Worker's whole vocabulary
                dists.append(spread(probs(row, temperature), self.vocab, vocab_size))
                drafts.append(sample(dists[-1], rng))
            else:
                drafts.append(int(self.vocab[int(np.argmax(row))]))
            if i + 1 == k or n + i + 1 >= self.context:
                break
            s, r = self._call(state[None], [drafts[-1]], n + i)
            state, row = s[-1], r[-1]
        return drafts, (np.stack(dists) if dists else None)
