"""MIL data types: the protobuf dtype table, how each type is held in memory and handed to callers,
and the conversions into that storage (fp16 rounding, packed sub-byte integers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kimi_student.export.errors import MilExecError


@dataclass(frozen=True)
class DType:
    name: str  # MIL spelling: fp16, int32, ...
    storage: np.dtype  # what the executor keeps in memory (fp16 -> float32, int4 -> int8)
    public: np.dtype  # what callers give and get back (fp16 -> float16)
    nbits: int = 0  # sub-byte width for packed blob / bytes data; 0 = whole bytes


def _dt(name: str, storage: Any, public: Any = None, nbits: int = 0) -> DType:
    return DType(name, np.dtype(storage), np.dtype(public if public is not None else storage), nbits)


# MIL_pb2.DataType numbers (stable protobuf enum values).
PROTO_DTYPES: dict[int, DType] = {
    1: _dt("bool", np.bool_),
    2: _dt("string", np.object_),
    10: _dt("fp16", np.float32, np.float16),
    11: _dt("fp32", np.float32),
    12: _dt("fp64", np.float64),
    21: _dt("int8", np.int8),
    22: _dt("int16", np.int16),
    23: _dt("int32", np.int32),
    24: _dt("int64", np.int64),
    25: _dt("int4", np.int8, nbits=4),
    31: _dt("uint8", np.uint8),
    32: _dt("uint16", np.uint16),
    33: _dt("uint32", np.uint32),
    34: _dt("uint64", np.uint64),
    35: _dt("uint4", np.uint8, nbits=4),
    36: _dt("uint2", np.uint8, nbits=2),
    37: _dt("uint1", np.uint8, nbits=1),
    38: _dt("uint6", np.uint8, nbits=6),
    39: _dt("uint3", np.uint8, nbits=3),
}
PROTO_DTYPE_NAMES = {13: "bf16", 40: "fp8e4m3fn", 41: "fp8e5m2"}
_BY_NAME: dict[str, DType] = {d.name: d for d in PROTO_DTYPES.values()}
# Spellings that `cast(dtype=...)` and friends use besides the canonical names.
_ALIASES = {"float16": "fp16", "float32": "fp32", "float64": "fp64", "double": "fp64", "float": "fp32"}


def dtype_by_name(name: str) -> DType:
    key = _ALIASES.get(name, name)
    if key not in _BY_NAME:
        raise MilExecError(f"unknown MIL dtype {name!r}")
    return _BY_NAME[key]


# numpy converts to and from float16 element by element; torch's vectorised cast rounds the same way
# (to nearest, ties to even, overflow to inf) about 5x faster: it is used for arrays big enough to pay.
_TORCH_MIN = 4096


def _torchable(a: np.ndarray) -> bool:
    return a.flags.c_contiguous and a.flags.writeable and a.size >= _TORCH_MIN


def round_fp16(a: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest fp16 value (overflow -> inf), kept as float32."""
    a = np.asarray(a, dtype=np.float32)
    if _torchable(a):
        out = np.empty(a.shape, np.float32)  # numpy owns it: an op may later write into it in place
        torch.from_numpy(out).copy_(torch.from_numpy(a).to(torch.float16))
        return out
    return a.astype(np.float16).astype(np.float32)


def widen_fp16(a: np.ndarray) -> np.ndarray:
    """A float16 array as a new float32 array (exact)."""
    if _torchable(a):
        out = np.empty(a.shape, np.float32)
        torch.from_numpy(out).copy_(torch.from_numpy(a))
        return out
    return a.astype(np.float32)


def store_fp16(dst: np.ndarray, values: np.ndarray) -> None:
    """Write float32 `values` into the float16 array `dst`, rounded to nearest."""
    values = np.asarray(values, dtype=np.float32)
    if _torchable(dst) and _torchable(values) and values.shape == dst.shape:
        torch.from_numpy(dst).copy_(torch.from_numpy(values))
    else:
        dst[...] = values.astype(np.float16)


def to_storage(a: Any, dt: DType) -> np.ndarray:
    arr = np.asarray(a)
    if dt.name == "fp16":
        return round_fp16(arr)
    if dt.storage == np.object_:
        return arr
    return arr.astype(dt.storage, copy=False)


def unpack_bits(packed: np.ndarray, nbits: int, count: int, signed: bool) -> np.ndarray:
    """Unpack n-bit integers packed from the least significant bit up (coremltools' order)."""
    packed = np.asarray(packed).astype(np.uint8, copy=False).reshape(-1)
    if packed.size * 8 < count * nbits:
        raise ValueError(f"{packed.size} bytes cannot hold {count} values of {nbits} bits")
    if 8 % nbits == 0:
        # Widths that tile a byte: shift each byte once per slot; one byte of memory per value.
        shifts = np.arange(0, 8, nbits, dtype=np.uint8)
        values = ((packed[:, None] >> shifts) & np.uint8((1 << nbits) - 1)).reshape(-1)[:count]
    else:
        # 3 and 6 bits straddle bytes: regroup the bit stream into nbits-wide rows and repack.
        bits = np.unpackbits(packed, bitorder="little")[: count * nbits].reshape(count, nbits)
        values = np.packbits(bits, axis=1, bitorder="little")[:, 0]
    if signed:
        return np.where(values >= 1 << (nbits - 1), values.astype(np.int16) - (1 << nbits), values).astype(
            np.int8
        )
    return values
