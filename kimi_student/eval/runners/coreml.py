"""coreml: exported Core ML packages, greedy decoding with the numpy MIL executor on any OS, or with Core
ML's own `MLModel.predict` on macOS.

`--model` is one package or a folder of them (as `export coreml` writes, with manifest.json). In the MIL
executor, a stateful decoder (`decode<C>.mlpackage`) is used when there is one, as a device runs the model:
the prompt fills the KV cache in chunks, each conversation's cache is kept across its turns, and drafts
are checked a chunk at a time (export/kv_decode.py). Otherwise, and with Core ML itself, the full-sequence
packages (`seq<S>.mlpackage`) run: each conversation in the smallest package that holds its prompt plus
`max_new_tokens`, else the largest that holds its prompt, one forward per step. The tokenizer and chat
template come from the checkpoint the manifest names, unless `--tokenizer` names a folder.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kimi_student.backends.coreml import find_decoder, find_packages, manifest_checkpoint
from kimi_student.chat.template import ChatTokenizer
from kimi_student.eval.runners.tool_loop import Generation, Messages
from kimi_student.export.errors import MilExecError
from kimi_student.fingerprint import model_folder_sha256, sha256_dir, sha256_json
from kimi_student.manifest import MANIFEST, package_entry

if TYPE_CHECKING:
    from kimi_student.export.greedy import DecodeStats, NgramDrafter
    from kimi_student.export.kv_decode import KVDecoder


class _CoreMLPredict:
    """MLModel.predict behind the MilProgram interface that greedy decoding uses (macOS)."""

    def __init__(self, path: Path, prog: Any):
        import coremltools as ct

        self.input_shape = prog.input_shape
        self.model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_AND_NE)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.model.predict(inputs).items()}


def call_syntax(chat: ChatTokenizer) -> list[list[int]]:
    """Token ids of each tool's call opening per argument, and of the call's closing: draft material."""
    from kimi_student.tools.registry import registry_json

    texts = ['"}}</tool_call>', "}}</tool_call>"]
    for t in registry_json():
        for arg in t["parameters"].get("properties", {}):
            texts.append(f'<tool_call>{{"name": "{t["name"]}", "arguments": {{"{arg}": "')
    return [chat.tok.encode(x, add_special_tokens=False) for x in texts]


class CoreMLGenerator:
    def __init__(
        self,
        model: str | Path,
        tokenizer: str | None = None,
        max_new_tokens: int = 256,
        drafter: NgramDrafter | None = None,
        backend: str | None = None,
        sessions: int = 32,
    ):
        """`drafter`: None drafts the call syntax of every tool; `backend`: "mil_exec" (the numpy
        executor) or "coreml" (MLModel.predict, macOS); None: Core ML on macOS, else the executor;
        `sessions`: KV caches kept (the stateful decoder), one per conversation in flight."""
        from kimi_student.export.greedy import NgramDrafter
        from kimi_student.export.mil import MilProgram
        from kimi_student.export.parity import package_seq_len
        from kimi_student.export.verify import verify_packages

        model = Path(model)
        self.backend = backend or ("coreml" if sys.platform == "darwin" else "mil_exec")
        decoder = find_decoder(model) if self.backend == "mil_exec" else None
        pkgs = [decoder] if decoder is not None else find_packages(model)
        verify_packages(pkgs)  # as `export verify`: a package that differs from its manifest never runs
        if tokenizer is None:
            tokenizer = manifest_checkpoint(pkgs[0].parent / MANIFEST)
        self.chat = ChatTokenizer(tokenizer)
        self.stop = self.chat.stop_rule()
        self.programs: dict[int, Any] = {}
        self.kv: KVDecoder | None = None
        if decoder is not None:
            self.kv = _kv_decoder(decoder, self.chat.pad_id, sessions)
        else:
            for p in pkgs:
                prog = MilProgram.load(p)
                self.programs[package_seq_len(prog)] = (
                    _CoreMLPredict(p, prog) if self.backend == "coreml" else prog
                )
        self.max_new_tokens = max_new_tokens
        # drafts (the output is greedy's either way): the sequence itself, and the call syntax of every tool
        self.drafter = drafter if drafter is not None else NgramDrafter(call_syntax(self.chat), max_n=3, k=16)
        self.fingerprint = sha256_json(
            {"packages": {p.name: sha256_dir(p) for p in pkgs}, "tokenizer": model_folder_sha256(tokenizer)}
        )

    @property
    def context(self) -> int:
        """The most tokens one sequence can hold: the decoder's cache, else the largest package."""
        return self.kv.context if self.kv is not None else max(self.programs)

    def decoding(self) -> dict[str, Any]:
        """The report header's facts about how this generator decodes."""
        if self.kv is not None:
            return {
                "backend": self.backend,
                "decoder": "stateful",
                "context": self.kv.context,
                "q_lens": sorted(self.kv.programs),
            }
        return {"backend": self.backend, "decoder": "full_sequence", "shapes": sorted(self.programs)}

    def _program(self, n: int) -> tuple[int, Any] | None:
        sizes = sorted(self.programs)
        s = next((s for s in sizes if s >= n + self.max_new_tokens), None)
        s = s or next((s for s in reversed(sizes) if s > n), None)
        return None if s is None else (s, self.programs[s])

    def decode_ids(self, ids: list[int], stats: DecodeStats | None = None) -> tuple[int, list[int]] | None:
        """(package length S, greedy new ids with the stop token) of one prompt's ids, in the package
        `_program` picks; None when no package holds the prompt. `stats` counts the forwards."""
        from kimi_student.export.greedy import greedy_decode

        picked = self._program(len(ids))
        if picked is None:
            return None
        s, prog = picked
        stop, pad = self.chat.stop_ids, self.chat.pad_id
        return s, greedy_decode(prog, ids, stop, self.max_new_tokens, self.drafter, pad, stats)

    def generate(self, conversations: list[Messages]) -> list[Generation]:
        out = []
        for conv in conversations:
            ids = self.chat.prompt_ids(conv)
            if self.kv is not None:
                if len(ids) >= self.kv.context:
                    out.append(Generation("", "context"))
                    continue
                new = self.kv.greedy(ids, self.stop, self.max_new_tokens, self.drafter)
                hit_limit = len(ids) + self.max_new_tokens <= self.kv.context
                out.append(Generation(*self.chat.turn(new, hit_limit)))
                continue
            decoded = self.decode_ids(ids)
            if decoded is None:
                out.append(Generation("", "context"))
                continue
            s, new = decoded
            text, finish = self.chat.turn(new, hit_limit=len(ids) + self.max_new_tokens <= s)
            out.append(Generation(text, finish))
        return out

    def continuation_logprobs(self, prompt: list[int], conts: list[list[int]]) -> list[list[float]]:
        """log p of each continuation's tokens after `prompt` (prompt ids, as `chat.prompt_ids` makes them)."""
        from kimi_student.export.greedy import DecodeStats, _forward

        if self.kv is not None:
            rows = self.kv.continuation_logits(prompt, conts)
        else:
            s = self._package_holding(len(prompt) + max(map(len, conts), default=0))
            n, stats = len(prompt), DecodeStats()
            rows = [
                _forward(self.programs[s], prompt + c, s, self.chat.pad_id, stats)[n - 1 : n - 1 + len(c)]
                for c in conts
            ]
        return [token_logprobs(r, c) for r, c in zip(rows, conts, strict=True)]

    def _package_holding(self, n: int) -> int:
        """The smallest full-sequence package that holds `n` tokens."""
        size = next((s for s in sorted(self.programs) if s >= n), None)
        if size is None:
            raise MilExecError(f"no package holds {n} tokens (shapes {sorted(self.programs)})")
        return size

    def next_logits(self, ids: list[int]) -> np.ndarray:
        """The logits (V) of the token after `ids`: the stateful decoder's session that holds them (only what
        it lacks is fed), else the smallest package that holds them."""
        from kimi_student.export.greedy import DecodeStats, _forward

        if self.kv is not None:
            s = self.kv.session(ids)
            return self.kv.prefill(s, ids[len(s.ids) :], DecodeStats())
        size = self._package_holding(len(ids))
        return _forward(self.programs[size], ids, size, self.chat.pad_id, DecodeStats())[len(ids) - 1]

    def close(self) -> None:
        self.programs.clear()
        if self.kv is not None:
            self.kv.clear()


def token_logprobs(logits: np.ndarray, tokens: list[int]) -> list[float]:
    """log softmax(logits[j])[tokens[j]] for each row j, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    top = x.max(axis=-1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(x - top).sum(axis=-1))
    return [float(x[j, t] - lse[j]) for j, t in enumerate(tokens)]


def _kv_decoder(package: Path, pad_id: int, sessions: int = 32) -> KVDecoder:
    """The package's functions by query length, with the context its manifest entry records."""
    from kimi_student.export.kv_decode import KVDecoder, function_q_len
    from kimi_student.export.mil import MilProgram

    programs = {function_q_len(name, p): p for name, p in MilProgram.load_all(package).items()}
    return KVDecoder(programs, int(package_entry(package)["context"]), pad_id, sessions)
