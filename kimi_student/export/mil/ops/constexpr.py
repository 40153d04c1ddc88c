"""Compressed constants (``constexpr_*``): affine / blockwise quantized, LUT-palettized and sparse
weights, expanded once at load."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kimi_student.export.errors import MilExecError
from kimi_student.export.mil.dtypes import unpack_bits
from kimi_student.export.mil.ops.base import along, axis_index, op
from kimi_student.export.mil.steps import Args


def _block_repeat(p: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Repeat a block-wise parameter along each axis until it covers `shape`."""
    for ax, (n, m) in enumerate(zip(shape, p.shape)):
        if m != n:
            if m == 0 or n % m:
                raise MilExecError(f"block parameter shape {p.shape} does not tile {tuple(shape)}")
            p = np.repeat(p, n // m, axis=ax)
    return p


@op("constexpr_affine_dequantize")
def _affine_dequantize(a: Args) -> np.ndarray:
    q = np.asarray(a["quantized_data"]).astype(np.float32)
    axis = a.as_int("axis", 0)
    zp = along(a["zero_point"], q.ndim, axis).astype(np.float32)
    return (q - zp) * along(a["scale"], q.ndim, axis)


@op("constexpr_blockwise_shift_scale")
def _blockwise_shift_scale(a: Args) -> np.ndarray:
    data = np.asarray(a["data"]).astype(np.float32)
    scale = np.asarray(a["scale"])
    if scale.ndim != data.ndim:
        raise MilExecError(f"op {a.step.name!r}: scale rank {scale.ndim} != data rank {data.ndim}")
    offset = a.get("offset")
    if offset is not None:
        data = data - _block_repeat(np.asarray(offset).astype(np.float32), data.shape)
    return data * _block_repeat(scale, data.shape)


@op("constexpr_cast")
def _constexpr_cast(a: Args) -> np.ndarray:
    return np.asarray(a["source_val"])


def _lut_dense(indices: np.ndarray, lut: np.ndarray, vector_axis: int | None) -> np.ndarray:
    """iOS18 LUT: lut is [*blocks, palette, vector]; block b of axis i covers indices.shape[i]/blocks[i]."""
    k = indices.ndim
    grids = []
    for i in range(k):
        n, m = indices.shape[i], lut.shape[i]
        if n % m:
            raise MilExecError(f"LUT blocks {lut.shape[:k]} do not tile indices {indices.shape}")
        shape = [1] * k
        shape[i] = n
        grids.append((np.arange(n) // (n // m)).reshape(shape))
    out = lut[(*grids, indices.astype(np.int64))]  # [*indices.shape, vector]
    vs = lut.shape[-1]
    if vs == 1:
        return out[..., 0]
    ax = axis_index(int(vector_axis or 0), k)
    out = np.moveaxis(out, -1, ax + 1)  # vector elements follow their index along vector_axis
    shape = list(indices.shape)
    shape[ax] *= vs
    return out.reshape(shape)


@op("constexpr_lut_to_dense")
def _lut_to_dense(a: Args) -> np.ndarray:
    lut = np.asarray(a["lut"])
    if a.has("shape"):  # iOS16: packed uint8 indices, a flat LUT and the output shape
        shape = a.as_ints("shape") or []
        nbits = int(round(math.log2(lut.size)))
        idx = unpack_bits(np.asarray(a["indices"]), nbits, math.prod(shape), signed=False)
        return lut.reshape(-1)[idx].reshape(shape)
    va = a.get("vector_axis")
    return _lut_dense(np.asarray(a["indices"]), lut, None if va is None else int(np.asarray(va)))


def _sparse_dense(nonzero: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros(mask.shape, dtype=nonzero.dtype)
    out[mask != 0] = nonzero
    return out


@op("constexpr_sparse_to_dense")
def _sparse_to_dense(a: Args) -> np.ndarray:
    nonzero = np.asarray(a["nonzero_data"])
    if a.has("shape"):  # iOS16: mask is packed bits over the flattened output
        shape = a.as_ints("shape") or []
        bits = np.unpackbits(np.asarray(a["mask"]).astype(np.uint8), bitorder="little")[: math.prod(shape)]
        return _sparse_dense(nonzero, bits.reshape(shape))
    return _sparse_dense(nonzero, np.asarray(a["mask"]))


@op("constexpr_lut_to_sparse")
def _lut_to_sparse(a: Args) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(a["indices_mask"])
    va = a.get("vector_axis")
    va = None if va is None else int(np.asarray(va))
    dense = _lut_dense(_sparse_dense(np.asarray(a["indices_nonzero_data"]), mask), np.asarray(a["lut"]), va)
    if np.asarray(a["lut"]).shape[-1] > 1:
        mask = np.repeat(mask, np.asarray(a["lut"]).shape[-1], axis=axis_index(va or 0, mask.ndim))
    return mask, dense[mask != 0].reshape(-1)


@op("constexpr_sparse_blockwise_shift_scale")
def _sparse_blockwise(a: Args) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(a["data_mask"])
    data = _sparse_dense(np.asarray(a["nonzero_data"]).astype(np.float32), mask)
    offset = a.get("offset")
    if offset is not None:
        data = data - _block_repeat(np.asarray(offset).astype(np.float32), data.shape)
    data = data * _block_repeat(np.asarray(a["scale"]), data.shape)
    return mask, data[mask != 0].reshape(-1)
