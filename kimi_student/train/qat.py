"""Quantization-aware training: the forward and backward of a micro-batch run on fake-quantized weights.

For the length of `fake_quantized(model, scheme)` every parameter matrix holds the weights the Core ML
package will hold (`export.quant.fake_quantize`, bit for bit); on leaving, the full-precision weights come
back and the gradient, computed at the quantized point, is applied to them: the straight-through estimator
(the rounding's derivative taken as 1). Swapping the values in place keeps the model an ordinary HF model
(no wrapper modules, no renamed state-dict keys), so checkpoints, resume and export are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from kimi_student.export.quant import WeightScheme, fake_quantize, quantized_parameters


@contextmanager
def fake_quantized(model: torch.nn.Module, scheme: WeightScheme | None) -> Iterator[None]:
    """Forward and backward inside; the optimizer step after (it must update the full-precision weights).
    Each matrix gets `scheme.of(its name)`: a mixed scheme keeps the vocabulary matrices on their own."""
    saved = []
    if scheme is not None:
        with torch.no_grad():
            for name, p in quantized_parameters(model):
                saved.append((p, p.detach().clone()))
                p.copy_(fake_quantize(p, scheme.of(name)))
    try:
        yield
    finally:
        with torch.no_grad():
            for p, full in saved:
                p.copy_(full)
