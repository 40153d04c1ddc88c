"""Activation quantisation (iOS17): quantize and dequantize."""

from __future__ import annotations

import numpy as np

from kimi_student.export.mil.dtypes import dtype_by_name
from kimi_student.export.mil.ops.base import along, float_view, op
from kimi_student.export.mil.steps import Args


@op("dequantize")
def _dequantize(a: Args) -> np.ndarray:
    x = np.asarray(a["input"]).astype(np.float32)
    axis = a.as_int("axis", 0) if a.has("axis") else None
    zp = a.get("zero_point")
    if zp is not None:
        x = x - along(zp, x.ndim, axis).astype(np.float32)
    return x * along(a["scale"], x.ndim, axis)


@op("quantize")
def _quantize(a: Args) -> np.ndarray:
    x = float_view(a["input"])
    axis = a.as_int("axis", 0) if a.has("axis") else None
    q = np.rint(x / along(a["scale"], x.ndim, axis))
    zp = a.get("zero_point")
    if zp is not None:
        q = q + along(zp, x.ndim, axis)
    info = np.iinfo(dtype_by_name(a.as_str("output_dtype")).storage)
    return np.clip(q, info.min, info.max)
