"""Linear algebra: linear, matmul, einsum, scaled dot-product attention, convolution."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kimi_student.export.errors import MilExecError
from kimi_student.export.mil.ops.base import channel_param, float_view, op, softmax
from kimi_student.export.mil.steps import Args


@op("linear")
def _linear(a: Args) -> np.ndarray:
    y = np.matmul(float_view(a["x"]), np.asarray(a["weight"]).T)
    bias = a.get("bias")
    return y if bias is None else y + bias


@op("matmul")
def _matmul(a: Args) -> np.ndarray:
    x, y = float_view(a["x"]), float_view(a["y"])
    if a.as_bool("transpose_x") and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if a.as_bool("transpose_y") and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@op("einsum")
def _einsum(a: Args) -> np.ndarray:
    return np.einsum(a.as_str("equation"), *[float_view(v) for v in a.all("values")], optimize=True)


@op("scaled_dot_product_attention")
def _sdpa(a: Args) -> np.ndarray:
    q, k, v = float_view(a["query"]), float_view(a["key"]), float_view(a["value"])
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    mask = a.get("attn_mask")
    if mask is not None:
        mask = np.asarray(mask)
        scores = np.where(mask, scores, -np.inf) if mask.dtype == np.bool_ else scores + mask
    return np.matmul(softmax(scores, -1), v)


def _conv_padding(a: Args, x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dil: Sequence[int]):
    n = len(kernel)
    pad_type = a.as_str("pad_type", "valid")
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        p = a.as_ints("pad", [0] * 2 * n)
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        out = []
        for i in range(n):
            size = x.shape[2 + i]
            eff = (kernel[i] - 1) * dil[i] + 1
            total = max((math.ceil(size / strides[i]) - 1) * strides[i] + eff - size, 0)
            small, big = total // 2, total - total // 2
            out.append((big, small) if pad_type == "same_lower" else (small, big))
        return out
    raise MilExecError(f"op {a.step.name!r}: unknown pad_type {pad_type!r}")


@op("conv")
def _conv(a: Args) -> np.ndarray:
    x, w = float_view(a["x"]), float_view(a["weight"])
    n = x.ndim - 2
    groups = a.as_int("groups", 1)
    strides = a.as_ints("strides", [1] * n)
    dil = a.as_ints("dilations", [1] * n)
    kernel = list(w.shape[2:])
    bias = a.get("bias")
    pads = _conv_padding(a, x, kernel, strides, dil)
    if (
        all(k == 1 for k in kernel)
        and all(s == 1 for s in strides)
        and not any(p for pair in pads for p in pair)
    ):
        # 1x1 convolution (the ANE (B, C, 1, S) layout): a matmul over channels per group.
        b, c = x.shape[:2]
        xs = x.reshape(b, groups, c // groups, -1)
        ws = w.reshape(groups, w.shape[0] // groups, c // groups)
        y = np.matmul(ws[None], xs).reshape((b, w.shape[0]) + x.shape[2:])
    else:
        xp = np.pad(x, [(0, 0), (0, 0), *pads])
        eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
        win = np.lib.stride_tricks.sliding_window_view(xp, eff, axis=tuple(range(2, 2 + n)))
        win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)]
        win = win[(Ellipsis,) + tuple(slice(None, None, d) for d in dil)]  # [B, C, *out, *kernel]
        b, c = x.shape[:2]
        out_sp = win.shape[2 : 2 + n]
        cg, og = c // groups, w.shape[0] // groups
        win = win.reshape((b, groups, cg) + out_sp + tuple(kernel))
        wg = w.reshape((groups, og, cg) + tuple(kernel))
        k_axes = tuple(range(3 + n, 3 + 2 * n))
        ys = [
            np.tensordot(win[:, g], wg[g], axes=((1, *[ax - 1 for ax in k_axes]), (1, *range(2, 2 + n))))
            for g in range(groups)
        ]  # each [B, *out, og]
        y = np.moveaxis(np.concatenate(ys, axis=-1), -1, 1)
    if bias is not None:
        y = y + channel_param(bias, y.ndim)
    return y
