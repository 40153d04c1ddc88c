"""The op registry (``@op``) that the op families fill and the program runs from, and the array
helpers several families share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kimi_student.export.mil.steps import Args

OpFn = Callable[[Args], Any]
OPS: dict[str, OpFn] = {}
# Ops whose outputs only move or select input values: fp16 outputs need no re-rounding.
EXACT_OPS: set[str] = set()


def op(*names: str, exact: bool = False) -> Callable[[OpFn], OpFn]:
    """Register the decorated function as the MIL op types `names`; `exact` marks ops that only move values."""

    def register(fn: OpFn) -> OpFn:
        for n in names:
            OPS[n] = fn
            if exact:
                EXACT_OPS.add(n)
        return fn

    return register


def axis_index(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def float_view(a: np.ndarray) -> np.ndarray:
    """Float view for math: integers are promoted, floats kept (fp16 is already float32)."""
    a = np.asarray(a)
    return a if a.dtype.kind == "f" else a.astype(np.float32)


def channel_param(p: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel [C] parameter broadcast against [N, C, *spatial]."""
    return np.asarray(p).reshape((1, -1) + (1,) * (rank - 2))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def along(p: Any, rank: int, axis: int | None) -> np.ndarray:
    """A scalar or per-axis 1-D parameter shaped to broadcast along `axis` of a rank-`rank` tensor."""
    p = np.asarray(p)
    if p.ndim == 0 or axis is None:
        return p
    shape = [1] * rank
    shape[axis_index(axis, rank)] = -1
    return p.reshape(shape)
