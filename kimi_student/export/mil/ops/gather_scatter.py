"""Gather and scatter along an axis or by n-d indices; negative indices wrap."""

from __future__ import annotations

import numpy as np

from kimi_student.export.errors import MilExecError
from kimi_student.export.mil.dtypes import round_fp16
from kimi_student.export.mil.ops.base import axis_index, op
from kimi_student.export.mil.steps import Args


def _wrap(indices: np.ndarray, size: int) -> np.ndarray:
    idx = np.asarray(indices).astype(np.int64)
    return np.where(idx < 0, idx + size, idx)


@op("gather", exact=True)
def _gather(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = axis_index(a.as_int("axis", 0), x.ndim)
    bd = a.as_int("batch_dims", 0)
    idx = _wrap(a["indices"], x.shape[axis])
    if bd == 0:
        return np.take(x, idx, axis=axis)
    # Batched gather: the first `bd` axes of x and indices pair up.
    batch = x.shape[:bd]
    xf = x.reshape((-1,) + x.shape[bd:])
    idf = idx.reshape((-1,) + idx.shape[bd:])
    out = np.stack([np.take(xf[i], idf[i], axis=axis - bd) for i in range(xf.shape[0])])
    return out.reshape(batch + out.shape[1:])


@op("gather_along_axis", exact=True)
def _gather_along_axis(a: Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = axis_index(a.as_int("axis", 0), x.ndim)
    return np.take_along_axis(x, _wrap(a["indices"], x.shape[axis]), axis=axis)


@op("gather_nd", exact=True)
def _gather_nd(a: Args) -> np.ndarray:
    x, idx = np.asarray(a["x"]), np.asarray(a["indices"]).astype(np.int64)
    bd = a.as_int("batch_dims", 0)
    batch = x.shape[:bd]
    xf = x.reshape((-1,) + x.shape[bd:])
    idf = idx.reshape((-1,) + idx.shape[bd:])
    outs = []
    for i in range(xf.shape[0]):
        k = idf[i].shape[-1]
        cols = tuple(_wrap(idf[i][..., j], xf.shape[1 + j]) for j in range(k))
        outs.append(xf[i][cols])
    out = np.stack(outs)
    return out.reshape(batch + out.shape[1:])


def _scatter_apply(target: np.ndarray, index: tuple, updates: np.ndarray, mode: str) -> None:
    if mode == "update":
        target[index] = updates
        return
    ufunc = {
        "add": np.add,
        "sub": np.subtract,
        "mul": np.multiply,
        "div": np.divide,
        "max": np.maximum,
        "min": np.minimum,
    }
    if mode not in ufunc:
        raise MilExecError(f"unknown scatter mode {mode!r}")
    ufunc[mode].at(target, index, updates)


@op("scatter")
def _scatter(a: Args) -> np.ndarray:
    data = np.array(a["data"], copy=True)
    axis = axis_index(a.as_int("axis", 0), data.ndim)
    idx = _wrap(a["indices"], data.shape[axis])
    upd = np.asarray(a["updates"])
    # updates has shape data[:axis] + indices.shape + data[axis+1:]
    moved = np.moveaxis(data, axis, 0)
    upd_m = np.moveaxis(upd.reshape(data.shape[:axis] + (idx.size,) + data.shape[axis + 1 :]), axis, 0)
    _scatter_apply(moved, (idx.reshape(-1),), upd_m, a.as_str("mode", "add"))
    return data


@op("scatter_along_axis")
def _scatter_along_axis(a: Args) -> np.ndarray:
    data = np.array(a["data"], copy=True)
    axis = axis_index(a.as_int("axis", 0), data.ndim)
    idx = _wrap(a["indices"], data.shape[axis])
    grids = list(np.indices(idx.shape, sparse=True))
    grids[axis] = idx
    _scatter_apply(data, tuple(grids), np.asarray(a["updates"]), a.as_str("mode", "add"))
    return data


@op("scatter_nd", exact=True)  # exact: an arithmetic mode rounds the entries it computes itself
def _scatter_nd(a: Args) -> np.ndarray:
    # in place when `data` dies here (the stateful decoder's KV-cache writes: the whole cache otherwise
    # copied, and rounded again, per layer)
    data = a["data"] if a.in_place else np.array(a["data"], copy=True)
    idx = np.asarray(a["indices"]).astype(np.int64)
    k = idx.shape[-1]
    cols = tuple(_wrap(idx[..., j], data.shape[j]) for j in range(k))
    mode = a.as_str("mode", "add")
    _scatter_apply(data, cols, np.asarray(a["updates"]), mode)
    out = a.out_types[0]
    if mode != "update" and out is not None and out.dtype.name == "fp16":
        data[cols] = round_fp16(data[cols])
    return data
