"""coreml: exported full-sequence packages (`seq<S>.mlpackage`), greedy decoding with the numpy MIL
executor on any OS, or with Core ML's own `MLModel.predict` on macOS.

`--model` is one package or a folder of them (as `export coreml` writes, with manifest.json). Each
conversation runs in the smallest package that holds its prompt plus `max_new_tokens`, else the largest
that holds its prompt. The tokenizer and chat template come from the checkpoint the manifest names,
unless `--tokenizer` names a folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kimi_student.chat.template import ChatTokenizer, model_folder_sha256
from kimi_student.errors import InputError
from kimi_student.eval.runners.tool_loop import Generation, Messages
from kimi_student.export.torch_export import MANIFEST
from kimi_student.fingerprint import sha256_dir, sha256_json


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


def find_packages(model: Path) -> list[Path]:
    if model.suffix == ".mlpackage":
        pkgs = [model]
    elif model.is_dir():
        pkgs = sorted(model.glob("seq*.mlpackage"))
    else:
        pkgs = []
    if not pkgs or not all(p.is_dir() for p in pkgs):
        raise InputError(model, None, "model", "expected a seq<S>.mlpackage or a folder of them")
    return pkgs


class CoreMLGenerator:
    def __init__(self, model: str | Path, tokenizer: str | None = None, max_new_tokens: int = 256):
        from kimi_student.export.greedy import NgramDrafter
        from kimi_student.export.mil import MilProgram
        from kimi_student.export.parity import package_seq_len

        model = Path(model)
        pkgs = find_packages(model)
        if tokenizer is None:
            man = pkgs[0].parent / MANIFEST
            try:
                tokenizer = json.loads(man.read_text(encoding="utf-8"))["checkpoint"]
            except (OSError, ValueError, KeyError):
                raise InputError(
                    man, None, "checkpoint", "no manifest names the checkpoint: pass --tokenizer"
                ) from None
        self.chat = ChatTokenizer(tokenizer)
        self.programs: dict[int, Any] = {}
        for p in pkgs:
            prog = MilProgram.load(p)
            self.programs[package_seq_len(prog)] = (
                _CoreMLPredict(p, prog) if sys.platform == "darwin" else prog
            )
        self.max_new_tokens = max_new_tokens
        # drafts (the output is greedy's either way): the sequence itself, and the call syntax of every tool
        self.drafter = NgramDrafter(call_syntax(self.chat), max_n=3, k=16)
        self.backend = "coreml" if sys.platform == "darwin" else "mil_exec"
        self.fingerprint = sha256_json(
            {"packages": {p.name: sha256_dir(p) for p in pkgs}, "tokenizer": model_folder_sha256(tokenizer)}
        )

    def _program(self, n: int) -> tuple[int, Any] | None:
        sizes = sorted(self.programs)
        s = next((s for s in sizes if s >= n + self.max_new_tokens), None)
        s = s or next((s for s in reversed(sizes) if s > n), None)
        return None if s is None else (s, self.programs[s])

    def generate(self, conversations: list[Messages]) -> list[Generation]:
        from kimi_student.export.greedy import greedy_decode

        out = []
        for conv in conversations:
            ids = self.chat.prompt_ids(conv)
            picked = self._program(len(ids))
            if picked is None:
                out.append(Generation("", "context"))
                continue
            s, prog = picked
            new = greedy_decode(
                prog, ids, self.chat.stop_ids, self.max_new_tokens, self.drafter, self.chat.pad_id
            )
            text, finish = self.chat.turn(new, hit_limit=len(ids) + self.max_new_tokens <= s)
            out.append(Generation(text, finish))
        return out

    def close(self) -> None:
        self.programs.clear()
