"""Shape and data movement: reshape, transpose, concat, split, slicing, padding, fills, sorting."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kimi_student.export.errors import MilExecError
from kimi_student.export.mil.ops.base import axis_index, float_view, op
from kimi_student.export.mil.steps import Args


@op("shape")
def _shape(a: Args) -> np.ndarray:
    return np.array(np.shape(a["x"]), dtype=np.int32)


@op("reshape", exact=True)
def _reshape(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    shape = a.as_ints("shape") or []
    if len(shape) == x.ndim:  # 0 copies the input's dimension when the ranks agree
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@op("reshape_like", exact=True)
def _reshape_like(a: Args) -> np.ndarray:
    refs, begins, ends, masks = a.all("ref_tensors"), a.all("begins"), a.all("ends"), a.all("end_masks")
    shape: list[int] = []
    for ref, b, e, m in zip(refs, begins, ends, masks):
        dims = np.shape(ref)
        shape.extend(dims[int(b) :] if bool(m) else dims[int(b) : int(e)])
    return np.asarray(a["x"]).reshape(shape)


@op("transpose", exact=True)
def _transpose(a: Args) -> np.ndarray:
    return np.transpose(a["x"], a.as_ints("perm"))


@op("expand_dims", exact=True)
def _expand_dims(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    rank = x.ndim + len(a.as_ints("axes") or [])
    return np.expand_dims(x, tuple(axis_index(i, rank) for i in a.as_ints("axes") or []))


@op("squeeze", exact=True)
def _squeeze(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axes = a.as_ints("axes")
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(axis_index(i, x.ndim) for i in axes))


@op("flatten2d", exact=True)
def _flatten2d(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = axis_index(a.as_int("axis", 1), x.ndim)
    return x.reshape(math.prod(x.shape[:axis]), -1)


@op("tile", exact=True)
def _tile(a: Args) -> np.ndarray:
    return np.tile(a["x"], a.as_ints("reps"))


@op("reverse", exact=True)
def _reverse(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axes = a.as_ints("axes")
    return np.flip(x, axis=None if axes is None else tuple(axes))


@op("concat", exact=True)
def _concat(a: Args) -> np.ndarray:
    # Scalars (e.g. gathered dimensions of a `shape`) concatenate as 1-element vectors.
    values = [np.atleast_1d(v) for v in a.all("values")]
    axis = axis_index(a.as_int("axis"), max(v.ndim for v in values))
    if a.as_bool("interleave"):
        # [a0 b0 a1 b1 ...] along axis: stack behind the axis, then merge the two.
        stacked = np.stack(values, axis=axis + 1)
        shape = list(values[0].shape)
        shape[axis] *= len(values)
        return stacked.reshape(shape)
    return np.concatenate(values, axis=axis)


@op("stack", exact=True)
def _stack(a: Args) -> np.ndarray:
    return np.stack([np.asarray(v) for v in a.all("values")], axis=a.as_int("axis"))


@op("split", exact=True)
def _split(a: Args) -> tuple[np.ndarray, ...]:
    x = np.asarray(a["x"])
    axis = axis_index(a.as_int("axis"), x.ndim)
    sizes = a.as_ints("split_sizes")
    if sizes is None:
        n = a.as_int("num_splits")
        if x.shape[axis] % n:
            raise MilExecError(f"op {a.step.name!r}: {n} splits do not divide dimension {x.shape[axis]}")
        sizes = [x.shape[axis] // n] * n
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _index_slices(a: Args, shape: Sequence[int]) -> tuple[slice | int, ...]:
    """slice_by_index / slice_update parameters as a numpy index; squeezed axes become integers."""
    rank = len(shape)
    begin = a.as_ints("begin") or [0] * rank
    end = a.as_ints("end") or list(shape)
    stride = a.as_ints("stride") or [1] * rank
    bmask = a.as_bools("begin_mask") or [False] * rank
    emask = a.as_bools("end_mask") or [False] * rank
    smask = a.as_bools("squeeze_mask") or [False] * rank
    out: list[slice | int] = []
    for i in range(rank):
        if smask[i]:
            out.append(begin[i])
        else:
            out.append(slice(None if bmask[i] else begin[i], None if emask[i] else end[i], stride[i]))
    return tuple(out)


@op("slice_by_index", exact=True)
def _slice_by_index(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    return x[_index_slices(a, x.shape)]  # integer entries drop the squeezed axes


@op("slice_by_size", exact=True)
def _slice_by_size(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    begin, size = a.as_ints("begin") or [], a.as_ints("size") or []
    slices = []
    for i in range(x.ndim):
        b = axis_index(begin[i], x.shape[i])
        slices.append(slice(b, None if size[i] == -1 else b + size[i]))
    return x[tuple(slices)]


@op("slice_update", exact=True)
def _slice_update(a: Args) -> np.ndarray:
    # never write into a value another op may still read; one that dies here is updated in place (the
    # stateful decoder's per-layer KV-cache updates would otherwise copy the whole cache each time)
    x = a["x"] if a.in_place else np.array(a["x"], copy=True)
    index = _index_slices(a, x.shape)
    x[index] = np.asarray(a["update"]).reshape(x[index].shape)
    return x


@op("sliding_windows", exact=True)
def _sliding_windows(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis, size, stride = axis_index(a.as_int("axis"), x.ndim), a.as_int("size"), a.as_int("stride", 1)
    win = np.lib.stride_tricks.sliding_window_view(x, size, axis=axis)  # window dim appended last
    win = win[(slice(None),) * axis + (slice(None, None, stride),)]
    return np.moveaxis(win, -1, axis + 1)


@op("pad")
def _pad(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    pad = a.as_ints("pad") or []
    widths = [(0, 0)] * (x.ndim - len(pad) // 2) + [
        (pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)
    ]
    mode = a.as_str("mode", "constant")
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=a.as_float("constant_val", 0.0))
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[mode])


@op("fill")
def _fill(a: Args) -> np.ndarray:
    value = a.get("value")
    return np.full(a.as_ints("shape") or [], 0.0 if value is None else np.asarray(value))


@op("fill_like")
def _fill_like(a: Args) -> np.ndarray:
    value = a.get("value")
    return np.full(np.shape(a["ref_tensor"]), 0.0 if value is None else np.asarray(value))


@op("range_1d")
def _range_1d(a: Args) -> np.ndarray:
    start, end, step = (np.asarray(a[k]).reshape(()) for k in ("start", "end", "step"))
    return np.arange(start, end, step)


@op("band_part", exact=True)
def _band_part(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    lower, upper = a.as_int("lower", -1), a.as_int("upper", -1)
    m, n = x.shape[-2:]
    d = np.arange(m)[:, None] - np.arange(n)[None, :]  # row - col
    keep = np.ones((m, n), dtype=bool)
    if lower >= 0:
        keep &= d <= lower
    if upper >= 0:
        keep &= -d <= upper
    return np.where(keep, x, np.zeros((), dtype=x.dtype))


@op("select", exact=True)
def _select(a: Args) -> np.ndarray:
    return np.where(np.asarray(a["cond"]).astype(bool), a["a"], a["b"])


@op("cumsum")
def _cumsum(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = axis_index(a.as_int("axis", 0), x.ndim)
    if a.as_bool("reverse"):
        x = np.flip(x, axis)
    y = np.cumsum(x, axis=axis)
    if a.as_bool("exclusive"):
        y = np.concatenate(
            [np.zeros_like(np.take(y, [0], axis=axis)), np.delete(y, -1, axis=axis)], axis=axis
        )
    return np.flip(y, axis) if a.as_bool("reverse") else y


@op("one_hot")
def _one_hot(a: Args) -> np.ndarray:
    idx = np.asarray(a["indices"])
    size = a.as_int("one_hot_vector_size")
    axis = axis_index(a.as_int("axis", -1), idx.ndim + 1)
    hot = idx[..., None] == np.arange(size)
    y = np.where(hot, a.as_float("on_value", 1.0), a.as_float("off_value", 0.0))
    return np.moveaxis(y, -1, axis)


@op("non_zero")
def _non_zero(a: Args) -> np.ndarray:
    return np.transpose(np.nonzero(a["x"])).astype(np.int32)


@op("argsort")
def _argsort(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = a.as_int("axis", -1)
    # Stable sort keeps equal keys in index order (ties broken by position, both directions).
    key = x if a.as_bool("ascending", False) else -float_view(x)
    return np.argsort(key, axis=axis, kind="stable").astype(np.int32)


@op("topk", exact=True)
def _topk(a: Args) -> Any:
    x = np.asarray(a["x"])
    axis, k = axis_index(a.as_int("axis", -1), x.ndim), a.as_int("k", 1)
    key = x if a.as_bool("ascending", False) else -float_view(x)
    idx = np.take(np.argsort(key, axis=axis, kind="stable"), np.arange(k), axis=axis)
    values = np.take_along_axis(x, idx, axis=axis)
    if not a.as_bool("return_indices", True):
        return values
    return values, idx
