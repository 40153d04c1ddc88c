"""Student configs (Worker, Judge, Drafter at real and toy size) and their construction.

Checkpoints are plain HF Llama folders (config.json + model.safetensors + tokenizer), so
`AutoModelForCausalLM.from_pretrained` and every tool of the HF ecosystem load them.
Initialisation is random (seeded) or a subset of a teacher's layers when it shares the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from kimi_student.backends.hf import load_causal_lm, resolve_teacher_folder, rope_theta
from kimi_student.errors import InputError, KimiStudentError
from kimi_student.resources import CONFIGS

_ARCH_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "vocab_size",
    "rope_theta",
    "tie_word_embeddings",
)


@dataclass
class StudentSpec:
    """One student at one size, plus its training recipe (read from configs/<role>.yaml)."""

    role: str
    size: str
    arch: dict[str, Any]
    init: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    tokenizer: str = "smollm2"  # `smollm2` or an HF tokenizer folder (a layer_subset init uses the teacher's)

    @property
    def n_params(self) -> int:
        """Parameter count of the architecture (embeddings counted once when tied)."""
        a = self.arch
        h, i, layers, v = a["hidden_size"], a["intermediate_size"], a["num_hidden_layers"], a["vocab_size"]
        head = h // a["num_attention_heads"]
        attn = h * h * 2 + 2 * h * head * a["num_key_value_heads"]
        per_layer = attn + 3 * h * i + 2 * h
        emb = v * h * (1 if a.get("tie_word_embeddings", True) else 2)
        return layers * per_layer + emb + h


def continue_from(spec: StudentSpec, folder: str | Path) -> StudentSpec:
    """`spec` starting from a trained checkpoint instead of its config's init: every layer of `folder` (an
    HF Llama folder with the same tokenizer), its architecture taken from its config.json; the training
    recipe stays the spec's. What a fine-tuning of a trained student (QAT, `train --init-from`) starts from."""
    import json

    path = Path(folder) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(path, None, None, f"cannot read the checkpoint's config: {e}") from None
    arch = {**spec.arch}
    for k in _ARCH_KEYS:
        if k == "rope_theta":
            arch[k] = rope_theta(cfg, arch.get(k))
        elif k in cfg:
            arch[k] = cfg[k]
    layers = list(range(int(arch["num_hidden_layers"])))
    init = {"kind": "layer_subset", "teacher": f"hf:{Path(folder)}", "layers": layers}
    return StudentSpec(spec.role, spec.size, arch, init, spec.train, spec.source, spec.tokenizer)


def load_spec(path_or_role: str | Path, size: str = "toy") -> StudentSpec:
    """`worker`, `judge`, `drafter` or a YAML path; `size` picks a block under `sizes:`."""
    p = Path(path_or_role)
    if not p.suffix:
        p = CONFIGS / f"{path_or_role}.yaml"
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise InputError(p, None, None, f"cannot read config: {e}") from None
    sizes = raw.get("sizes") or {}
    if size not in sizes:
        raise InputError(p, None, "sizes", f"no size {size!r} (have: {', '.join(sizes)})")
    block = sizes[size]
    tokenizer = str(block.get("tokenizer") or raw.get("tokenizer") or "smollm2")
    if tokenizer != "smollm2" and not Path(tokenizer).is_absolute():
        tokenizer = str(p.parent / tokenizer)  # a relative folder is relative to the config file
    arch = {**raw.get("arch", {}), **block.get("arch", {})}
    missing = [k for k in _ARCH_KEYS[:7] if k not in arch]
    if missing:
        raise InputError(p, None, f"sizes.{size}.arch", f"missing {', '.join(missing)}")
    return StudentSpec(
        raw.get("role", p.stem),
        size,
        arch,
        block.get("init", {"kind": "random"}),
        {**raw.get("train", {}), **block.get("train", {})},
        p,
        tokenizer,
    )


def llama_config(spec: StudentSpec) -> Any:
    from transformers import LlamaConfig

    a = dict(spec.arch)
    rope = a.pop("rope_theta", 10000.0)
    # SmolLM2's ids unless the arch names its own tokenizer's (a student with another vocabulary)
    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    ids.update({k: a.pop(k) for k in list(ids) if k in a})
    return LlamaConfig(
        **a,
        **ids,
        rope_parameters={"rope_type": "default", "rope_theta": rope},
        head_dim=None,
    )


def even_layers(n_teacher: int, n_student: int) -> list[int]:
    """Spread `n_student` layers over the teacher's depth, always keeping the first and the last."""
    if n_student == 1:
        return [0]
    return sorted({round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)})


def build_student(spec: StudentSpec, seed: int = 0) -> Any:
    """A `LlamaForCausalLM`: seeded random weights, or copied layers of a teacher folder."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    kind = spec.init.get("kind", "random")
    if kind == "random":
        return LlamaForCausalLM(llama_config(spec))
    if kind != "layer_subset":
        raise KimiStudentError(f"unknown init kind {kind!r} (random | layer_subset)")
    teacher = load_causal_lm(resolve_teacher_folder(spec.init["teacher"]))
    tc = teacher.config
    layers = spec.init.get("layers") or even_layers(tc.num_hidden_layers, spec.arch["num_hidden_layers"])
    if len(layers) != spec.arch["num_hidden_layers"] or max(layers) >= tc.num_hidden_layers:
        raise KimiStudentError(f"layers {layers} do not fit a {tc.num_hidden_layers}-layer teacher")
    for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "vocab_size"):
        if getattr(tc, k) != spec.arch[k]:
            raise KimiStudentError(
                f"layer_subset needs the teacher's {k} ({getattr(tc, k)}), config has {spec.arch[k]}"
            )
    student = LlamaForCausalLM(llama_config(spec))
    sd = teacher.state_dict()
    remap = {}
    for new, old in enumerate(layers):
        remap[f"model.layers.{old}."] = f"model.layers.{new}."
    out = {}
    for k, v in sd.items():
        if k.startswith("model.layers."):
            prefix = ".".join(k.split(".")[:3]) + "."
            if prefix in remap:
                out[remap[prefix] + k[len(prefix) :]] = v.clone()
        else:
            out[k] = v.clone()
    missing, unexpected = student.load_state_dict(out, strict=False)
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise KimiStudentError(f"layer subset mismatch: missing {missing}, unexpected {unexpected}")
    student.tie_weights()
    return student


def resolve_tokenizer_folder(ref: str) -> Path:
    """`smollm2` (the embedded one) or an HF tokenizer folder (tokenizer.json + tokenizer_config.json)."""
    if ref == "smollm2":
        from kimi_student.backends.embedded import smollm2_folder

        return smollm2_folder()
    p = Path(ref)
    if not (p / "tokenizer_config.json").is_file():
        raise KimiStudentError(f"tokenizer {ref!r}: no tokenizer_config.json (use 'smollm2' or an HF folder)")
    return p


@lru_cache(maxsize=4)
def _loaded_tokenizer(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> Any:
    """The tokenizer of `folder` as of `stamp` (its files' names, sizes and mtimes): a run saves it with
    every checkpoint, and parsing SmolLM2's 49k-token tokenizer again each time cost ~0.3 s a save."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _tokenizer_of(folder: str | Path) -> Any:
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    return _loaded_tokenizer(
        str(folder), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    )


def save_checkpoint(model: Any, tokenizer_folder: str | Path, out: str | Path) -> Path:
    """config.json + model.safetensors + tokenizer files, written to a temp folder then renamed."""
    import os

    from kimi_student.outputs import folder_writer

    out = Path(out)
    with folder_writer(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        _tokenizer_of(tokenizer_folder).save_pretrained(tmp)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)  # a checkpoint is meant to be shared, whatever the umask
    return out
