"""One Hugging Face loader for the teachers, the student's layer_subset init, the trainer and the hf_local
runner. A model reference is `smollm2` (the embedded SmolLM2), `hf:DIR` or a plain DIR (an HF folder with
config.json), or `hf:FILE.gguf` (transformers de-quantizes it). Weights load in fp32, offline."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_student.errors import KimiStudentError
from kimi_student.fingerprint import embedded_teacher_id, gguf_teacher_id, hf_teacher_id

SMOLLM2 = "smollm2"


@dataclass(frozen=True)
class HFSource:
    """Where a model reference's files are: an HF folder, or a .gguf file inside `folder`."""

    uri: str
    folder: Path
    gguf_file: str | None = None

    @property
    def teacher_id(self) -> str:
        """The id a teacher answers under (KD cache keys and dataset headers; see fingerprint.py)."""
        if self.uri == SMOLLM2:
            return embedded_teacher_id(self.folder)
        if self.gguf_file is not None:
            return gguf_teacher_id(self.folder / self.gguf_file)
        return hf_teacher_id(self.folder)

    def pretrained_args(self) -> tuple[str, dict[str, Any]]:
        """(path, keyword arguments) for transformers' `from_pretrained`."""
        return str(self.folder), ({"gguf_file": self.gguf_file} if self.gguf_file else {})


def find_source(uri: str) -> HFSource | None:
    """The files `uri` names, or None when it names neither an HF folder nor a .gguf file."""
    if uri == SMOLLM2:
        from kimi_student.backends.embedded import smollm2_folder  # lazy: it imports the tokenizers

        return HFSource(uri, smollm2_folder())
    p = Path(uri.removeprefix("hf:"))
    if p.suffix == ".gguf" and p.is_file():
        return HFSource(uri, p.parent, p.name)
    if (p / "config.json").is_file():
        return HFSource(uri, p)
    return None


def hf_source(uri: str) -> HFSource:
    """A teacher's files: an HF folder or a .gguf file."""
    src = find_source(uri)
    if src is None:
        raise KimiStudentError(f"teacher {uri!r}: not an HF folder (config.json) or a .gguf file")
    return src


def resolve_teacher_folder(uri: str) -> Path:
    """An HF folder (no .gguf: the trainer and the layer_subset init read its config and tokenizer)."""
    src = find_source(uri)
    if src is None or src.gguf_file is not None:
        raise KimiStudentError(f"teacher {uri!r}: no config.json (use 'smollm2' or an HF folder)")
    return src.folder


def rope_theta(cfg: dict[str, Any], default: float | None = None) -> float | None:
    """An HF config.json's RoPE base: transformers 5 writes it under `rope_parameters`, older configs at the
    top level."""
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    return rope.get("rope_theta") or cfg.get("rope_theta") or default


def load_causal_lm(source: str | Path | HFSource) -> Any:
    """`AutoModelForCausalLM` in fp32 (eval mode is the caller's choice) from a reference (str), an HF
    folder (Path) or resolved files."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM

    if isinstance(source, Path):
        src = HFSource(str(source), source)
    else:
        src = source if isinstance(source, HFSource) else hf_source(source)
    path, kw = src.pretrained_args()
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw)


def load_hf_tokenizer(source: HFSource) -> Any:
    """`AutoTokenizer` of a model's files (a .gguf file carries its own)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    path, kw = source.pretrained_args()
    return AutoTokenizer.from_pretrained(path, **kw)


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (oneDNN says so: AVX512-BF16 or AMX). Where it
    does not (AVX2-only), bf16 is emulated and many times slower than fp32, so `auto` precisions pick fp32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
