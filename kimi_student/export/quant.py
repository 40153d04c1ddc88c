"""Weight quantization schemes of the Core ML export, and the same arithmetic in torch for training.

A scheme names what coremltools' `linear_quantize_weights` does to every parameter matrix of an export:
symmetric linear quantization of the FP16 weights, INT8 with one scale per output channel, or INT4 with one
scale per block of `block_size` input channels (iOS18's `constexpr_blockwise_shift_scale`). A scheme may keep
the vocabulary matrices (the embedding and the output head, tied or not) on a scheme of their own: `int4emb8`
stores the layers at INT4 and those at INT8 (SmolLM2-135M: 90.3 MB against all-INT4's 77.8), the 4-bit grid
that quantization-aware training brings back to full precision's F1 where all-INT4 does not (bench/qat.py).

`fake_quantize` computes, in torch, the dequantized weights such a package holds, bit for bit: the
arithmetic of coremltools' `quantize_weight_by_dtype` in FP16 (max |w| of the group, scale = 2 max / (2 qmax),
round half to even, clip to ±qmax) and the dequantization q · scale rounded to FP16. Quantization-aware
training (`train.qat`) runs each forward and backward on these weights, so what the student learns to work
with is what the package will hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kimi_student.errors import KimiStudentError


@dataclass(frozen=True)
class WeightScheme:
    name: str
    dtype: str  # coremltools' name of the stored integer type
    bits: int
    block_size: int  # input channels that share a scale; 0: a whole row (per output channel)
    vocabulary: WeightScheme | None = None  # the embedding's and the head's own scheme; None: this one

    def of(self, parameter: str) -> WeightScheme:
        """The scheme of one parameter matrix, by its name in torch (`model.embed_tokens.weight`) or in the
        export (`p_lm_head_weight_to_fp16`: a tied head is stored under the head's name)."""
        if self.vocabulary is not None and any(v in parameter for v in VOCABULARY):
            return self.vocabulary
        return self

    @property
    def qmax(self) -> int:
        """The largest stored magnitude: symmetric modes drop the most negative value (-128 for INT8)."""
        return 2 ** (self.bits - 1) - 1

    @property
    def granularity(self) -> str:
        return "per_block" if self.block_size else "per_channel"

    def _op(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": "linear_symmetric",
            "dtype": self.dtype,
            "granularity": self.granularity,
        }
        if self.block_size:
            out["block_size"] = self.block_size
        return out

    def describe(self) -> dict[str, Any]:
        """The scheme as a manifest records it."""
        if self.vocabulary is None:
            return self._op()
        return {**self._op(), "vocabulary": {"matrices": list(VOCABULARY), **self.vocabulary._op()}}

    def coreml_config(self) -> Any:
        """coremltools' op config for one matrix on this scheme (quantized whatever its size); a mixed
        scheme's `of(name)` picks the one to ask."""
        from coremltools.optimize.coreml import OpLinearQuantizerConfig

        return OpLinearQuantizerConfig(**self._op(), weight_threshold=0)


VOCABULARY = ("embed_tokens", "lm_head")  # the names of the vocabulary matrices, in torch and in the export
_INT8 = WeightScheme("int8", "int8", 8, 0)


SCHEMES: dict[str, WeightScheme] = {
    "int8": _INT8,
    "int4": WeightScheme("int4", "int4", 4, 32),  # 32: the block Apple's own 4-bit LLM exports use
    "int4emb8": WeightScheme("int4emb8", "int4", 4, 32, vocabulary=_INT8),
}


def scheme(name: str) -> WeightScheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise KimiStudentError(
            f"unknown weight scheme {name!r}; choose one of {', '.join(SCHEMES)}"
        ) from None


def fake_quantize(w: torch.Tensor, s: WeightScheme) -> torch.Tensor:
    """The weights (out, in, ...) as the package dequantizes them, in w's dtype; no gradient of its own
    (quantization-aware training passes the gradient straight through: see `train.qat`)."""
    with torch.no_grad():
        h = w.detach().to(torch.float16)
        out, cin = h.shape[0], h.shape[1]
        block = s.block_size or cin
        if cin % block:
            raise KimiStudentError(
                f"a weight of {cin} input channels does not split into {s.name} blocks of {block}"
            )
        # (out, blocks, block, rest): the rest (a conv's kernel axes) belongs to the block
        g = h.reshape(out, cin // block, block, -1)
        max_abs = g.abs().amax(dim=(2, 3), keepdim=True)
        scale = (max_abs + max_abs) / (2 * s.qmax)  # (max - min) / (qmax - qmin), in FP16 as coremltools
        q = torch.round(g / torch.where(scale == 0, torch.ones_like(scale), scale)).clamp(-s.qmax, s.qmax)
        # stored as integers: a value that rounds to -0 comes back +0
        return (q.to(torch.int8) * scale).reshape(h.shape).to(w.dtype)


def quantized(shape: tuple[int, ...] | torch.Size) -> bool:
    """Whether the export quantizes a parameter of this shape: every matrix; norms and biases (rank 1) stay
    FP16. One rule for the export's const ops (coreml.weight_names) and for QAT's parameters."""
    return len(shape) >= 2


def quantized_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters the export quantizes, each once (a tied head is the embedding)."""
    return [(n, p) for n, p in model.named_parameters() if quantized(p.shape)]
