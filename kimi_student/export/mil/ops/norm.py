"""Normalisation: layer, batch, instance and L2 norm."""

from __future__ import annotations

import numpy as np

from kimi_student.export.mil.ops.base import axis_index, channel_param, float_view, op
from kimi_student.export.mil.steps import Args


@op("layer_norm")
def _layer_norm(a: Args) -> np.ndarray:
    x = float_view(a["x"])
    axes = tuple(axis_index(i, x.ndim) for i in (a.as_ints("axes") or range(x.ndim)))
    mean = np.mean(x, axis=axes, keepdims=True)
    d = x - mean
    y = d / np.sqrt(np.mean(d * d, axis=axes, keepdims=True) + a.as_float("epsilon", 1e-5))
    norm_shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    gamma, beta = a.get("gamma"), a.get("beta")
    if gamma is not None:
        y = y * np.asarray(gamma).reshape(norm_shape)
    if beta is not None:
        y = y + np.asarray(beta).reshape(norm_shape)
    return y


@op("batch_norm")
def _batch_norm(a: Args) -> np.ndarray:
    x = float_view(a["x"])
    c = lambda k: channel_param(a[k], x.ndim)  # noqa: E731
    y = (x - c("mean")) / np.sqrt(c("variance") + a.as_float("epsilon", 1e-5))
    if a.get("gamma") is not None:
        y = y * c("gamma")
    if a.get("beta") is not None:
        y = y + c("beta")
    return y


@op("instance_norm")
def _instance_norm(a: Args) -> np.ndarray:
    x = float_view(a["x"])
    axes = tuple(range(2, x.ndim))
    d = x - np.mean(x, axis=axes, keepdims=True)
    y = d / np.sqrt(np.mean(d * d, axis=axes, keepdims=True) + a.as_float("epsilon", 1e-5))
    if a.get("gamma") is not None:
        y = y * channel_param(a["gamma"], x.ndim)
    if a.get("beta") is not None:
        y = y + channel_param(a["beta"], x.ndim)
    return y


@op("l2_norm")
def _l2_norm(a: Args) -> np.ndarray:
    # Normalises over the last three axes (or all axes of a rank-3 tensor), as MIL specifies.
    x = float_view(a["x"])
    axes = tuple(range(max(x.ndim - 3, 0), x.ndim))
    return x / np.sqrt(np.sum(x * x, axis=axes, keepdims=True) + a.as_float("epsilon", 1e-6))
