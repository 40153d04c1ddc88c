"""Converting the test models with coremltools and running the result; shared by the test modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

ct = pytest.importorskip("coremltools")

from kimi_student.export.coreml import convert_validated_once  # noqa: E402
from kimi_student.export.mil import MilProgram  # noqa: E402

# Converter chatter (deprecations, trace warnings, renamed outputs), not findings.
CONVERTER_CHATTER = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


def convert(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    inputs: list[Any],
    *,
    precision: Any = None,
    target: Any = None,
    via: str = "export",
    dynamic_shapes: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """torch -> Core ML ML program -> saved .mlpackage; returns the MLModel."""
    module = module.eval()
    if via == "export":
        src = torch.export.export(module, args, dynamic_shapes=dynamic_shapes).run_decompositions({})
    else:
        src = torch.jit.trace(module, args)
    mlmodel = convert_validated_once(
        src,
        inputs=inputs,
        convert_to="mlprogram",
        compute_precision=precision or ct.precision.FLOAT32,
        minimum_deployment_target=target or ct.target.iOS17,
        **kwargs,
    )
    mlmodel.save(str(path))
    return mlmodel


def seeded(cls: type[nn.Module], *args: Any, seed: int = 0, **kwargs: Any) -> nn.Module:
    torch.manual_seed(seed)
    module = cls(*args, **kwargs).eval()
    with torch.no_grad():  # spread the tied embedding so logits have clear top-1 margins
        for name, p in module.named_parameters():
            if name.startswith("emb"):
                p.mul_(2.0)
    return module


def ids_input(length: Any = 8) -> Any:
    return ct.TensorType(name="ids", shape=(1, length), dtype=np.int32)


def run(prog: MilProgram, **inputs: np.ndarray) -> np.ndarray:
    out = prog.predict(inputs)
    assert len(out) == 1
    return next(iter(out.values()))


def torch_logits(module: nn.Module, *args: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(*(torch.from_numpy(a) for a in args)).numpy()
