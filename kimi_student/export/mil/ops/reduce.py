"""Reductions over axes, and arg-max / arg-min."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kimi_student.export.mil.ops.base import OpFn, axis_index, float_view, op
from kimi_student.export.mil.steps import Args


def _reduce(fn: Callable[..., np.ndarray], pre: Callable[[np.ndarray], np.ndarray] | None = None) -> OpFn:
    def run(a: Args) -> np.ndarray:
        x = np.asarray(a["x"])
        if pre is not None:
            x = pre(float_view(x))
        axes = a.as_ints("axes")
        ax = None if axes is None else tuple(axis_index(i, x.ndim) for i in axes)
        return fn(x, axis=ax, keepdims=a.as_bool("keep_dims"))

    return run


op("reduce_sum")(_reduce(np.sum))
op("reduce_mean")(_reduce(np.mean))
op("reduce_prod")(_reduce(np.prod))
op("reduce_max", exact=True)(_reduce(np.max))
op("reduce_min", exact=True)(_reduce(np.min))
op("reduce_sum_square")(_reduce(np.sum, np.square))
op("reduce_l1_norm")(_reduce(np.sum, np.abs))
op("reduce_l2_norm")(_reduce(lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))))
op("reduce_log_sum")(_reduce(lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims))))


@op("reduce_log_sum_exp")
def _reduce_lse(a: Args) -> np.ndarray:
    x = float_view(a["x"])
    axes = a.as_ints("axes")
    ax = tuple(range(x.ndim)) if axes is None else tuple(axis_index(i, x.ndim) for i in axes)
    m = np.max(x, axis=ax, keepdims=True)
    y = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    return y if a.as_bool("keep_dims") else np.squeeze(y, axis=ax)


def _arg_reduce(fn: Callable[..., np.ndarray]) -> OpFn:
    def run(a: Args) -> np.ndarray:
        x = np.asarray(a["x"])
        axis = axis_index(a.as_int("axis", -1), x.ndim)
        y = fn(x, axis=axis)
        return np.expand_dims(y, axis) if a.as_bool("keep_dims") else y

    return run


op("reduce_argmax")(_arg_reduce(np.argmax))
op("reduce_argmin")(_arg_reduce(np.argmin))
