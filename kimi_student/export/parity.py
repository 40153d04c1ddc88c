"""Parity of a saved Core ML package with PyTorch: max abs logit difference, top-1 agreement, and
whether greedy decoding gives the same tokens.

The package runs in the numpy MIL executor (on macOS, `MLModel.predict` can be compared with it).
The PyTorch reference is the ANE module on the checkpoint; with `dequantized=True` its weights are
replaced by the package's own weights after dequantization (INT8 -> fp16 -> fp32), so the comparison
isolates execution (fp16 compute) from quantization error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kimi_student.export.errors import ExportError
from kimi_student.export.mil import MilProgram
from kimi_student.models.ane import AneLlama, load_ane_llama

_SUFFIXES = ("_to_fp16_quantized", "_quantized", "_to_fp16", "")


def package_seq_len(prog: MilProgram) -> int:
    return int(prog.input_shape("input_ids")[1])


def load_package_weights(model: AneLlama, prog: MilProgram) -> int:
    """Copy the package's (dequantized) weights into `model`; returns how many tensors were replaced.

    A weight matches by name (`p_<parameter path>` plus a converter suffix) and shape; a bc1s package's
    1x1-convolution weights (out, in, 1, 1) match the (out, in) linear weights of the bsc module."""
    weights = prog.weights()
    replaced = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            stem = "p_" + name.replace(".", "_")
            w = next((weights[stem + s] for s in _SUFFIXES if stem + s in weights), None)
            if w is None:
                continue
            w = np.asarray(w, dtype=np.float32)
            if w.ndim == 4 and w.shape[2:] == (1, 1):
                w = w[:, :, 0, 0]
            if tuple(w.shape) == tuple(p.shape):
                p.copy_(torch.from_numpy(w))
                replaced += 1
    return replaced


@dataclass
class ParityReport:
    package: str
    seq_len: int
    prompts: int
    weights_replaced: int
    max_abs_logit_diff: float
    top1_agreement: float
    greedy_tokens: int
    greedy_match: bool
    greedy_torch: list[list[int]]
    greedy_package: list[list[int]]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _pad(ids: list[int], n: int, pad: int) -> np.ndarray:
    return np.asarray([ids[:n] + [pad] * (n - len(ids[:n]))], dtype=np.int32)


def check_parity(
    checkpoint: str | Path,
    package: str | Path,
    prompts: list[list[int]],
    greedy_tokens: int = 16,
    dequantized: bool = True,
    pad_id: int = 0,
) -> ParityReport:
    prog = MilProgram.load(package)
    s = package_seq_len(prog)
    model = load_ane_llama(checkpoint, max_seq=s).eval()
    replaced = load_package_weights(model, prog) if dequantized else 0
    if dequantized and not replaced:
        n = sum(1 for _ in model.parameters())
        raise ExportError(
            f"{package}: none of the {n} weights of {checkpoint} is in the package (no name and shape "
            "match), so there are no dequantized package weights to compare with; is this the package of "
            "that checkpoint? (--no-dequantized compares with the checkpoint's own weights)"
        )
    max_diff, agree, total = 0.0, 0, 0
    g_torch, g_pkg = [], []
    for ids in prompts:
        ids = ids[: s - greedy_tokens] or ids[:1]
        n = len(ids)
        x = _pad(ids, s, pad_id)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()[0, :n].astype(np.float32)
        out = prog.predict({"input_ids": x})["logits"][0, :n].astype(np.float32)
        max_diff = max(max_diff, float(np.abs(out - ref).max()))
        agree += int((out.argmax(-1) == ref.argmax(-1)).sum())
        total += n
        for runner, sink in (
            (lambda a: model(torch.from_numpy(a)).detach().numpy(), g_torch),
            (lambda a: prog.predict({"input_ids": a})["logits"], g_pkg),
        ):
            seq = list(ids)
            for _ in range(greedy_tokens):
                if len(seq) >= s:
                    break
                logits = runner(_pad(seq, s, pad_id))
                seq.append(int(np.asarray(logits)[0, len(seq) - 1].argmax()))
            sink.append(seq[n:])
    return ParityReport(
        str(package),
        s,
        len(prompts),
        replaced,
        max_diff,
        agree / total if total else 0.0,
        greedy_tokens,
        g_torch == g_pkg,
        g_torch,
        g_pkg,
    )
