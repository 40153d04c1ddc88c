"""Run a saved Core ML ML program (``.mlpackage``) with numpy, on any OS.

coremltools converts, quantizes and saves ``.mlpackage`` files on Linux but only macOS can predict
with them (DESIGN.md section 6). This module reads the package itself (Manifest.json, the Model
protobuf, the MIL weight blob) and interprets the ``main`` function op by op, so exported students
can be checked against torch anywhere.

Numerics follow the program's declared types:

* fp16 tensors are kept as float32 arrays whose values are rounded to fp16 after every op that can
  produce new values. That is what fp16 storage with wider accumulation (ANE/GPU) gives, and it is
  far faster than numpy's emulated float16 arithmetic. fp16 outputs and states come back as float16.
* integer casts wrap like the hardware (``cast`` to int16 of a large id wraps) and float -> int casts
  truncate, as coremltools' own constant folding does.
* compressed weights (``constexpr_*``: affine / blockwise INT8 or INT4, LUT palettes, sparse masks)
  are expanded once at load and cached with the other constants.

Unsupported ops fail at load with :class:`UnsupportedOpError` naming the op type; a broken package
fails with :class:`CorruptPackageError` naming the file.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kimi_student.errors import KimiStudentError

__all__ = [
    "CorruptPackageError",
    "MilExecError",
    "MilProgram",
    "SUPPORTED_OPS",
    "UnsupportedOpError",
    "predict_with_coreml",
    "read_blob",
]


class MilExecError(KimiStudentError):
    """The ML program cannot be run: bad inputs, or a value the program itself declares wrongly."""


class UnsupportedOpError(MilExecError):
    """The program uses an op type (or a dtype / value kind) this executor does not implement."""

    def __init__(self, op_types: Iterable[str], where: str, what: str = "op type(s)"):
        self.op_types = sorted(set(op_types))
        names = ", ".join(repr(t) for t in self.op_types)
        super().__init__(
            f"{where}: unsupported MIL {what} {names}; the numpy executor cannot run this program"
        )


class CorruptPackageError(MilExecError):
    """A package file is missing, truncated or malformed. ``path`` names the file."""

    def __init__(self, path: str | Path, message: str):
        self.path = Path(path)
        super().__init__(f"{path}: {message}")


# --------------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DType:
    name: str  # MIL spelling: fp16, int32, ...
    storage: np.dtype  # what the executor keeps in memory (fp16 -> float32, int4 -> int8)
    public: np.dtype  # what callers give and get back (fp16 -> float16)
    nbits: int = 0  # sub-byte width for packed blob / bytes data; 0 = whole bytes


def _dt(name: str, storage: Any, public: Any = None, nbits: int = 0) -> _DType:
    return _DType(name, np.dtype(storage), np.dtype(public if public is not None else storage), nbits)


# MIL_pb2.DataType numbers (stable protobuf enum values).
_PROTO_DTYPES: dict[int, _DType] = {
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
_PROTO_DTYPE_NAMES = {13: "bf16", 40: "fp8e4m3fn", 41: "fp8e5m2"}
_BY_NAME: dict[str, _DType] = {d.name: d for d in _PROTO_DTYPES.values()}
# Spellings that `cast(dtype=...)` and friends use besides the canonical names.
_ALIASES = {"float16": "fp16", "float32": "fp32", "float64": "fp64", "double": "fp64", "float": "fp32"}

# Blob storage format (coremltools MILBlob StorageFormat.hpp): BlobDataType enum values.
_BLOB_DTYPES: dict[int, str] = {
    1: "fp16",
    2: "fp32",
    3: "uint8",
    4: "int8",
    5: "bf16",
    6: "int16",
    7: "uint16",
    8: "int4",
    9: "uint1",
    10: "uint2",
    11: "uint4",
    12: "uint3",
    13: "uint6",
    14: "int32",
    15: "uint32",
    16: "fp8e4m3fn",
    17: "fp8e5m2",
}
_BLOB_SENTINEL = 0xDEADBEEF
_HEADER = struct.Struct("<II")  # count, version; the 64-byte header is padded with reserved fields
_METADATA = struct.Struct("<IIQQQ")  # sentinel, dtype, size in bytes, data offset, padding bits
_HEADER_SIZE = 64
_METADATA_SIZE = 64


def _dtype_by_name(name: str) -> _DType:
    key = _ALIASES.get(name, name)
    if key not in _BY_NAME:
        raise MilExecError(f"unknown MIL dtype {name!r}")
    return _BY_NAME[key]


def _round_fp16(a: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest fp16 value (overflow -> inf), kept as float32."""
    return np.asarray(a, dtype=np.float32).astype(np.float16).astype(np.float32)


def _to_storage(a: Any, dt: _DType) -> np.ndarray:
    arr = np.asarray(a)
    if dt.name == "fp16":
        return _round_fp16(arr)
    if dt.storage == np.object_:
        return arr
    return arr.astype(dt.storage, copy=False)


def _unpack_bits(packed: np.ndarray, nbits: int, count: int, signed: bool) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------
# Weight blob file
# --------------------------------------------------------------------------------------------------


class _BlobFile:
    """Reader for the MIL weight blob: a 64-byte header, then 64-byte metadata records
    (sentinel 0xDEADBEEF, data type, size, data offset) each pointing at 64-byte aligned data.

    Our own reader rather than coremltools.libmilstoragepython: it needs no native library, and a
    truncated or overwritten file gives an error naming the file and offset instead of a crash."""

    def __init__(self, path: Path):
        self.path = path
        try:
            size = path.stat().st_size
            # Memory-mapped: blobs are copied out one by one, the file is never held twice.
            self.data = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        except (OSError, ValueError) as e:
            raise CorruptPackageError(path, f"cannot read weight file ({e})") from e
        if self.data.size < _HEADER_SIZE:
            raise CorruptPackageError(
                path, f"weight file is truncated ({self.data.size} bytes, header needs 64)"
            )
        self.count, self.version = _HEADER.unpack_from(self.data, 0)
        if self.version not in (1, 2):
            raise CorruptPackageError(path, f"unknown weight file version {self.version} (expected 2)")

    def read(self, offset: int, dt: _DType, shape: tuple[int, ...]) -> np.ndarray:
        where = f"blob at offset {offset}"
        if offset + _METADATA_SIZE > self.data.size:
            raise CorruptPackageError(
                self.path, f"{where}: metadata lies beyond the end of the file (truncated?)"
            )
        sentinel, code, size, data_offset, padding_bits = _METADATA.unpack_from(self.data, offset)
        if sentinel != _BLOB_SENTINEL:
            raise CorruptPackageError(
                self.path, f"{where}: bad sentinel 0x{sentinel:08x} (expected 0xdeadbeef)"
            )
        blob_name = _BLOB_DTYPES.get(code, f"code {code}")
        if blob_name != dt.name:
            raise CorruptPackageError(
                self.path, f"{where}: holds {blob_name} data but the program declares {dt.name}"
            )
        if data_offset + size > self.data.size:
            raise CorruptPackageError(
                self.path,
                f"{where}: data [{data_offset}, {data_offset + size}) lies beyond the end of the file "
                f"({self.data.size} bytes; truncated?)",
            )
        raw = self.data[data_offset : data_offset + size]
        count = math.prod(shape)
        if dt.nbits:
            available = (size * 8 - (padding_bits if self.version >= 2 else 0)) // dt.nbits
            if available < count:
                raise CorruptPackageError(self.path, f"{where}: {available} values stored, {count} declared")
            return _unpack_bits(raw, dt.nbits, count, signed=dt.name.startswith("int")).reshape(shape)
        src = np.dtype(np.float16) if dt.name == "fp16" else dt.storage
        if size != count * src.itemsize:
            raise CorruptPackageError(
                self.path, f"{where}: {size} bytes stored, {count * src.itemsize} declared"
            )
        return raw.view(src).reshape(shape).copy()  # a copy: cached weights must not pin the file buffer


def read_blob(path: str | Path, offset: int, dtype: str, shape: Sequence[int]) -> np.ndarray:
    """Read one blob from a MIL weight file (``weight.bin``); fp16 comes back as float16."""
    dt = _dtype_by_name(dtype)
    return _BlobFile(Path(path)).read(offset, dt, tuple(int(s) for s in shape))


# --------------------------------------------------------------------------------------------------
# Program representation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TensorType:
    dtype: _DType
    shape: tuple[int | None, ...] | None  # None: unknown rank; None entries: unknown dims
    is_state: bool = False


@dataclass
class _Step:
    """One op, with inputs pre-resolved to constants or variable names."""

    type: str
    name: str
    inputs: dict[str, list[tuple[bool, Any]]]  # param -> [(is_var, var name or constant)]
    outputs: list[tuple[str, _TensorType | None]]
    drop: list[str] = field(default_factory=list)  # variables whose last use is this op


class _Args:
    """The resolved inputs of one op, with small typed accessors for its constant parameters."""

    __slots__ = ("step", "values", "out_types", "states")

    def __init__(
        self,
        step: _Step,
        values: dict[str, list[Any]],
        states: dict[str, np.ndarray] | None,
    ):
        self.step, self.values, self.states = step, values, states
        self.out_types = [t for _, t in step.outputs]

    def __getitem__(self, key: str) -> Any:
        try:
            return self.values[key][0]
        except KeyError:
            raise MilExecError(
                f"op {self.step.name!r} ({self.step.type}): required input {key!r} is missing"
            ) from None

    def has(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        v = self.values.get(key)
        return v[0] if v else default

    def all(self, key: str) -> list[Any]:
        return self.values.get(key, [])

    def as_int(self, key: str, default: int | None = None) -> int:
        v = self.get(key)
        if v is None:
            if default is None:
                self[key]  # raises the missing-input error
            return int(default)  # type: ignore[arg-type]
        return int(np.asarray(v).reshape(-1)[0])

    def as_ints(self, key: str, default: Sequence[int] | None = None) -> list[int] | None:
        v = self.get(key)
        if v is None:
            return None if default is None else list(default)
        return [int(i) for i in np.asarray(v).reshape(-1)]

    def as_bool(self, key: str, default: bool = False) -> bool:
        v = self.get(key)
        return default if v is None else bool(np.asarray(v).reshape(-1)[0])

    def as_bools(self, key: str) -> list[bool] | None:
        v = self.get(key)
        return None if v is None else [bool(b) for b in np.asarray(v).reshape(-1)]

    def as_float(self, key: str, default: float) -> float:
        v = self.get(key)
        return default if v is None else float(np.asarray(v).reshape(-1)[0])

    def as_str(self, key: str, default: str | None = None) -> str:
        v = self.get(key)
        if v is None:
            if default is None:
                self[key]
            return default  # type: ignore[return-value]
        return str(np.asarray(v).reshape(-1)[0])

    def out_dtype(self, i: int = 0) -> _DType | None:
        t = self.out_types[i] if i < len(self.out_types) else None
        return t.dtype if t is not None else None


# --------------------------------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------------------------------

_OpFn = Callable[[_Args], Any]
_OPS: dict[str, _OpFn] = {}
# Ops whose outputs only move or select input values: fp16 outputs need no re-rounding.
_EXACT_OPS: set[str] = set()


def _op(*names: str, exact: bool = False) -> Callable[[_OpFn], _OpFn]:
    def register(fn: _OpFn) -> _OpFn:
        for n in names:
            _OPS[n] = fn
            if exact:
                _EXACT_OPS.add(n)
        return fn

    return register


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _fp(a: np.ndarray) -> np.ndarray:
    """Float view for math: integers are promoted, floats kept (fp16 is already float32)."""
    a = np.asarray(a)
    return a if a.dtype.kind == "f" else a.astype(np.float32)


# -- elementwise binary ------------------------------------------------------------------------------

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "floor_div": np.floor_divide,
    "mod": np.mod,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}


def _binary(fn: Callable[[Any, Any], Any]) -> _OpFn:
    return lambda a: fn(np.asarray(a["x"]), np.asarray(a["y"]))


for _name, _fn in _BINARY.items():
    _op(_name)(_binary(_fn))
_op("maximum", exact=True)(_binary(np.maximum))
_op("minimum", exact=True)(_binary(np.minimum))


@_op("real_div")
def _real_div(a: _Args) -> np.ndarray:
    # True division even for int32 operands; the declared int output type truncates the result,
    # as coremltools' constant folding (operator.truediv + astype) does.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.true_divide(a["x"], a["y"])


@_op("pow")
def _pow(a: _Args) -> np.ndarray:
    x, y = np.asarray(a["x"]), np.asarray(a["y"])
    if x.dtype.kind in "iu" and y.dtype.kind in "iu":
        return np.power(x.astype(np.int64), y.astype(np.int64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.power(_fp(x), _fp(y))


# -- elementwise unary / activations -----------------------------------------------------------------


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf and math.erf per element would be a Python loop. Small |x|: Maclaurin series
    # (keeps the relative error tiny near 0); elsewhere Abramowitz & Stegun 7.1.26 (abs err 1.5e-7).
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    out = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    small = z < 0.5
    xs = x[small]
    term, series = xs.copy(), xs.copy()
    for n in range(1, 12):  # |x| < 0.5: terms fall below 1e-17
        term = term * -(xs * xs) / n
        series = series + term / (2 * n + 1)
    out[small] = series * (2.0 / math.sqrt(math.pi))
    return out.astype(np.float32)


def _unary(name: str, fn: Callable[[np.ndarray], Any], exact: bool = False) -> None:
    def run(a: _Args) -> Any:
        with np.errstate(all="ignore"):  # domain errors give nan/inf, as on device
            return fn(_fp(a["x"]))

    _op(name, exact=exact)(run)


for _name, _ufn in {
    "acos": np.arccos,
    "asin": np.arcsin,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "ceil": np.ceil,
    "cos": np.cos,
    "cosh": np.cosh,
    "erf": _erf,
    "exp": np.exp,
    "exp2": np.exp2,
    "floor": np.floor,
    "round": np.round,  # half to even, as coremltools' np.round folding
    "sign": np.sign,
    "sin": np.sin,
    "sinh": np.sinh,
    "sqrt": np.sqrt,
    "square": np.square,
    "tan": np.tan,
    "tanh": np.tanh,
    "sigmoid": lambda x: 0.5 * (np.tanh(0.5 * x) + 1.0),  # no exp overflow for large |x|
    "silu": lambda x: x * (0.5 * (np.tanh(0.5 * x) + 1.0)),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
}.items():
    _unary(_name, _ufn)
_unary("relu", lambda x: np.maximum(x, 0), exact=True)


@_op("abs", exact=True)
def _abs(a: _Args) -> np.ndarray:
    return np.abs(a["x"])


@_op("neg", exact=True)  # not emitted by coremltools 9 (it uses mul by -1) but cheap to accept
def _neg(a: _Args) -> np.ndarray:
    return np.negative(a["x"])


@_op("logical_not")
def _logical_not(a: _Args) -> np.ndarray:
    return np.logical_not(a["x"])


@_op("rsqrt")
def _rsqrt(a: _Args) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 / np.sqrt(_fp(a["x"]) + a.as_float("epsilon", 1e-12))


@_op("inverse")
def _inverse(a: _Args) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 1.0 / (_fp(a["x"]) + a.as_float("epsilon", 1e-4))


@_op("log")
def _log(a: _Args) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(_fp(a["x"]) + a.as_float("epsilon", 1e-45))


@_op("clip")
def _clip(a: _Args) -> np.ndarray:
    return np.minimum(np.maximum(a["x"], a["alpha"]), a["beta"])


@_op("threshold")
def _threshold(a: _Args) -> np.ndarray:
    return np.maximum(a["x"], a["alpha"])


@_op("gelu")
def _gelu(a: _Args) -> np.ndarray:
    x, mode = _fp(a["x"]), a.as_str("mode", "EXACT")
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x / (1.0 + np.exp(-1.702 * x))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


@_op("elu")
def _elu(a: _Args) -> np.ndarray:
    x = _fp(a["x"])
    return np.where(x > 0, x, a.as_float("alpha", 1.0) * np.expm1(np.minimum(x, 0)))


@_op("leaky_relu")
def _leaky_relu(a: _Args) -> np.ndarray:
    x = _fp(a["x"])
    return np.where(x >= 0, x, a.as_float("alpha", 0.01) * x)


@_op("linear_activation")
def _linear_activation(a: _Args) -> np.ndarray:
    return a.as_float("alpha", 1.0) * _fp(a["x"]) + a.as_float("beta", 0.0)


@_op("sigmoid_hard")
def _sigmoid_hard(a: _Args) -> np.ndarray:
    return np.clip(a.as_float("alpha", 0.2) * _fp(a["x"]) + a.as_float("beta", 0.5), 0.0, 1.0)


@_op("scaled_tanh")
def _scaled_tanh(a: _Args) -> np.ndarray:
    return a.as_float("alpha", 1.0) * np.tanh(a.as_float("beta", 1.0) * _fp(a["x"]))


@_op("clamped_relu")
def _clamped_relu(a: _Args) -> np.ndarray:
    x = _fp(a["x"])
    return np.minimum(np.where(x >= 0, x, a.as_float("alpha", 0.0) * x), a.as_float("beta", 6.0))


@_op("thresholded_relu")
def _thresholded_relu(a: _Args) -> np.ndarray:
    x = _fp(a["x"])
    return np.where(x > a.as_float("alpha", 1.0), x, 0.0)


def _channel_param(p: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel [C] parameter broadcast against [N, C, *spatial]."""
    return np.asarray(p).reshape((1, -1) + (1,) * (rank - 2))


@_op("prelu")
def _prelu(a: _Args) -> np.ndarray:
    x = _fp(a["x"])
    return np.where(x >= 0, x, _channel_param(a["alpha"], x.ndim) * x)


@_op("softplus_parametric")
def _softplus_parametric(a: _Args) -> np.ndarray:
    x = _fp(a["x"])
    return _channel_param(a["alpha"], x.ndim) * np.logaddexp(0.0, _channel_param(a["beta"], x.ndim) * x)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@_op("softmax")
def _softmax_op(a: _Args) -> np.ndarray:
    return _softmax(_fp(a["x"]), a.as_int("axis", -1))


@_op("cast")
def _cast(a: _Args) -> np.ndarray:
    # The post-op coercion to the declared output type does the conversion (wrapping, truncation,
    # fp16 rounding); the op itself only checks that dtype and declaration agree.
    dt = _dtype_by_name(a.as_str("dtype"))
    declared = a.out_dtype()
    if declared is not None and declared.name != dt.name:
        raise MilExecError(f"op {a.step.name!r}: cast to {dt.name} declares output type {declared.name}")
    x = np.asarray(a["x"])
    if dt.storage.kind in "iu" and x.dtype.kind == "f":
        # float -> int truncates toward zero; go through int64 so the later narrowing wraps.
        return np.trunc(x).astype(np.int64)
    return x


@_op("identity", exact=True)
def _identity(a: _Args) -> np.ndarray:
    return a["x"]


# -- linear algebra ----------------------------------------------------------------------------------


@_op("linear")
def _linear(a: _Args) -> np.ndarray:
    y = np.matmul(_fp(a["x"]), np.asarray(a["weight"]).T)
    bias = a.get("bias")
    return y if bias is None else y + bias


@_op("matmul")
def _matmul(a: _Args) -> np.ndarray:
    x, y = _fp(a["x"]), _fp(a["y"])
    if a.as_bool("transpose_x") and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if a.as_bool("transpose_y") and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@_op("einsum")
def _einsum(a: _Args) -> np.ndarray:
    return np.einsum(a.as_str("equation"), *[_fp(v) for v in a.all("values")], optimize=True)


@_op("scaled_dot_product_attention")
def _sdpa(a: _Args) -> np.ndarray:
    q, k, v = _fp(a["query"]), _fp(a["key"]), _fp(a["value"])
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    mask = a.get("attn_mask")
    if mask is not None:
        mask = np.asarray(mask)
        scores = np.where(mask, scores, -np.inf) if mask.dtype == np.bool_ else scores + mask
    return np.matmul(_softmax(scores, -1), v)


def _conv_padding(a: _Args, x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dil: Sequence[int]):
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


@_op("conv")
def _conv(a: _Args) -> np.ndarray:
    x, w = _fp(a["x"]), _fp(a["weight"])
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
        y = y + _channel_param(bias, y.ndim)
    return y


# -- normalisation -----------------------------------------------------------------------------------


@_op("layer_norm")
def _layer_norm(a: _Args) -> np.ndarray:
    x = _fp(a["x"])
    axes = tuple(_axis(i, x.ndim) for i in (a.as_ints("axes") or range(x.ndim)))
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


@_op("batch_norm")
def _batch_norm(a: _Args) -> np.ndarray:
    x = _fp(a["x"])
    c = lambda k: _channel_param(a[k], x.ndim)  # noqa: E731
    y = (x - c("mean")) / np.sqrt(c("variance") + a.as_float("epsilon", 1e-5))
    if a.get("gamma") is not None:
        y = y * c("gamma")
    if a.get("beta") is not None:
        y = y + c("beta")
    return y


@_op("instance_norm")
def _instance_norm(a: _Args) -> np.ndarray:
    x = _fp(a["x"])
    axes = tuple(range(2, x.ndim))
    d = x - np.mean(x, axis=axes, keepdims=True)
    y = d / np.sqrt(np.mean(d * d, axis=axes, keepdims=True) + a.as_float("epsilon", 1e-5))
    if a.get("gamma") is not None:
        y = y * _channel_param(a["gamma"], x.ndim)
    if a.get("beta") is not None:
        y = y + _channel_param(a["beta"], x.ndim)
    return y


@_op("l2_norm")
def _l2_norm(a: _Args) -> np.ndarray:
    # Normalises over the last three axes (or all axes of a rank-3 tensor), as MIL specifies.
    x = _fp(a["x"])
    axes = tuple(range(max(x.ndim - 3, 0), x.ndim))
    return x / np.sqrt(np.sum(x * x, axis=axes, keepdims=True) + a.as_float("epsilon", 1e-6))


# -- reductions --------------------------------------------------------------------------------------


def _reduce(fn: Callable[..., np.ndarray], pre: Callable[[np.ndarray], np.ndarray] | None = None) -> _OpFn:
    def run(a: _Args) -> np.ndarray:
        x = np.asarray(a["x"])
        if pre is not None:
            x = pre(_fp(x))
        axes = a.as_ints("axes")
        ax = None if axes is None else tuple(_axis(i, x.ndim) for i in axes)
        return fn(x, axis=ax, keepdims=a.as_bool("keep_dims"))

    return run


_op("reduce_sum")(_reduce(np.sum))
_op("reduce_mean")(_reduce(np.mean))
_op("reduce_prod")(_reduce(np.prod))
_op("reduce_max", exact=True)(_reduce(np.max))
_op("reduce_min", exact=True)(_reduce(np.min))
_op("reduce_sum_square")(_reduce(np.sum, np.square))
_op("reduce_l1_norm")(_reduce(np.sum, np.abs))
_op("reduce_l2_norm")(_reduce(lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))))
_op("reduce_log_sum")(_reduce(lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims))))


@_op("reduce_log_sum_exp")
def _reduce_lse(a: _Args) -> np.ndarray:
    x = _fp(a["x"])
    axes = a.as_ints("axes")
    ax = tuple(range(x.ndim)) if axes is None else tuple(_axis(i, x.ndim) for i in axes)
    m = np.max(x, axis=ax, keepdims=True)
    y = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    return y if a.as_bool("keep_dims") else np.squeeze(y, axis=ax)


def _arg_reduce(fn: Callable[..., np.ndarray]) -> _OpFn:
    def run(a: _Args) -> np.ndarray:
        x = np.asarray(a["x"])
        axis = _axis(a.as_int("axis", -1), x.ndim)
        y = fn(x, axis=axis)
        return np.expand_dims(y, axis) if a.as_bool("keep_dims") else y

    return run


_op("reduce_argmax")(_arg_reduce(np.argmax))
_op("reduce_argmin")(_arg_reduce(np.argmin))


# -- shape and data movement -------------------------------------------------------------------------


@_op("shape")
def _shape(a: _Args) -> np.ndarray:
    return np.array(np.shape(a["x"]), dtype=np.int32)


@_op("reshape", exact=True)
def _reshape(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    shape = a.as_ints("shape") or []
    if len(shape) == x.ndim:  # 0 copies the input's dimension when the ranks agree
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@_op("reshape_like", exact=True)
def _reshape_like(a: _Args) -> np.ndarray:
    refs, begins, ends, masks = a.all("ref_tensors"), a.all("begins"), a.all("ends"), a.all("end_masks")
    shape: list[int] = []
    for ref, b, e, m in zip(refs, begins, ends, masks):
        dims = np.shape(ref)
        shape.extend(dims[int(b) :] if bool(m) else dims[int(b) : int(e)])
    return np.asarray(a["x"]).reshape(shape)


@_op("transpose", exact=True)
def _transpose(a: _Args) -> np.ndarray:
    return np.transpose(a["x"], a.as_ints("perm"))


@_op("expand_dims", exact=True)
def _expand_dims(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    rank = x.ndim + len(a.as_ints("axes") or [])
    return np.expand_dims(x, tuple(_axis(i, rank) for i in a.as_ints("axes") or []))


@_op("squeeze", exact=True)
def _squeeze(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axes = a.as_ints("axes")
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(_axis(i, x.ndim) for i in axes))


@_op("flatten2d", exact=True)
def _flatten2d(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = _axis(a.as_int("axis", 1), x.ndim)
    return x.reshape(math.prod(x.shape[:axis]), -1)


@_op("tile", exact=True)
def _tile(a: _Args) -> np.ndarray:
    return np.tile(a["x"], a.as_ints("reps"))


@_op("reverse", exact=True)
def _reverse(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axes = a.as_ints("axes")
    return np.flip(x, axis=None if axes is None else tuple(axes))


@_op("concat", exact=True)
def _concat(a: _Args) -> np.ndarray:
    # Scalars (e.g. gathered dimensions of a `shape`) concatenate as 1-element vectors.
    values = [np.atleast_1d(v) for v in a.all("values")]
    axis = _axis(a.as_int("axis"), max(v.ndim for v in values))
    if a.as_bool("interleave"):
        # [a0 b0 a1 b1 ...] along axis: stack behind the axis, then merge the two.
        stacked = np.stack(values, axis=axis + 1)
        shape = list(values[0].shape)
        shape[axis] *= len(values)
        return stacked.reshape(shape)
    return np.concatenate(values, axis=axis)


@_op("stack", exact=True)
def _stack(a: _Args) -> np.ndarray:
    return np.stack([np.asarray(v) for v in a.all("values")], axis=a.as_int("axis"))


@_op("split", exact=True)
def _split(a: _Args) -> tuple[np.ndarray, ...]:
    x = np.asarray(a["x"])
    axis = _axis(a.as_int("axis"), x.ndim)
    sizes = a.as_ints("split_sizes")
    if sizes is None:
        n = a.as_int("num_splits")
        if x.shape[axis] % n:
            raise MilExecError(f"op {a.step.name!r}: {n} splits do not divide dimension {x.shape[axis]}")
        sizes = [x.shape[axis] // n] * n
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _index_slices(a: _Args, shape: Sequence[int]) -> tuple[slice | int, ...]:
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


@_op("slice_by_index", exact=True)
def _slice_by_index(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    return x[_index_slices(a, x.shape)]  # integer entries drop the squeezed axes


@_op("slice_by_size", exact=True)
def _slice_by_size(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    begin, size = a.as_ints("begin") or [], a.as_ints("size") or []
    slices = []
    for i in range(x.ndim):
        b = _axis(begin[i], x.shape[i])
        slices.append(slice(b, None if size[i] == -1 else b + size[i]))
    return x[tuple(slices)]


@_op("slice_update", exact=True)
def _slice_update(a: _Args) -> np.ndarray:
    x = np.array(a["x"], copy=True)  # never write into a value another op may still read
    index = _index_slices(a, x.shape)
    x[index] = np.asarray(a["update"]).reshape(x[index].shape)
    return x


@_op("sliding_windows", exact=True)
def _sliding_windows(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis, size, stride = _axis(a.as_int("axis"), x.ndim), a.as_int("size"), a.as_int("stride", 1)
    win = np.lib.stride_tricks.sliding_window_view(x, size, axis=axis)  # window dim appended last
    win = win[(slice(None),) * axis + (slice(None, None, stride),)]
    return np.moveaxis(win, -1, axis + 1)


@_op("pad")
def _pad(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    pad = a.as_ints("pad") or []
    widths = [(0, 0)] * (x.ndim - len(pad) // 2) + [
        (pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)
    ]
    mode = a.as_str("mode", "constant")
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=a.as_float("constant_val", 0.0))
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[mode])


@_op("fill")
def _fill(a: _Args) -> np.ndarray:
    value = a.get("value")
    return np.full(a.as_ints("shape") or [], 0.0 if value is None else np.asarray(value))


@_op("fill_like")
def _fill_like(a: _Args) -> np.ndarray:
    value = a.get("value")
    return np.full(np.shape(a["ref_tensor"]), 0.0 if value is None else np.asarray(value))


@_op("range_1d")
def _range_1d(a: _Args) -> np.ndarray:
    start, end, step = (np.asarray(a[k]).reshape(()) for k in ("start", "end", "step"))
    return np.arange(start, end, step)


@_op("band_part", exact=True)
def _band_part(a: _Args) -> np.ndarray:
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


@_op("select", exact=True)
def _select(a: _Args) -> np.ndarray:
    return np.where(np.asarray(a["cond"]).astype(bool), a["a"], a["b"])


@_op("cumsum")
def _cumsum(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = _axis(a.as_int("axis", 0), x.ndim)
    if a.as_bool("reverse"):
        x = np.flip(x, axis)
    y = np.cumsum(x, axis=axis)
    if a.as_bool("exclusive"):
        y = np.concatenate(
            [np.zeros_like(np.take(y, [0], axis=axis)), np.delete(y, -1, axis=axis)], axis=axis
        )
    return np.flip(y, axis) if a.as_bool("reverse") else y


@_op("one_hot")
def _one_hot(a: _Args) -> np.ndarray:
    idx = np.asarray(a["indices"])
    size = a.as_int("one_hot_vector_size")
    axis = _axis(a.as_int("axis", -1), idx.ndim + 1)
    hot = idx[..., None] == np.arange(size)
    y = np.where(hot, a.as_float("on_value", 1.0), a.as_float("off_value", 0.0))
    return np.moveaxis(y, -1, axis)


@_op("non_zero")
def _non_zero(a: _Args) -> np.ndarray:
    return np.transpose(np.nonzero(a["x"])).astype(np.int32)


@_op("argsort")
def _argsort(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = a.as_int("axis", -1)
    # Stable sort keeps equal keys in index order (ties broken by position, both directions).
    key = x if a.as_bool("ascending", False) else -_fp(x)
    return np.argsort(key, axis=axis, kind="stable").astype(np.int32)


@_op("topk", exact=True)
def _topk(a: _Args) -> Any:
    x = np.asarray(a["x"])
    axis, k = _axis(a.as_int("axis", -1), x.ndim), a.as_int("k", 1)
    key = x if a.as_bool("ascending", False) else -_fp(x)
    idx = np.take(np.argsort(key, axis=axis, kind="stable"), np.arange(k), axis=axis)
    values = np.take_along_axis(x, idx, axis=axis)
    if not a.as_bool("return_indices", True):
        return values
    return values, idx


# -- gather / scatter --------------------------------------------------------------------------------


def _wrap(indices: np.ndarray, size: int) -> np.ndarray:
    idx = np.asarray(indices).astype(np.int64)
    return np.where(idx < 0, idx + size, idx)


@_op("gather", exact=True)
def _gather(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = _axis(a.as_int("axis", 0), x.ndim)
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


@_op("gather_along_axis", exact=True)
def _gather_along_axis(a: _Args) -> np.ndarray:
    x = np.asarray(a["x"])
    axis = _axis(a.as_int("axis", 0), x.ndim)
    return np.take_along_axis(x, _wrap(a["indices"], x.shape[axis]), axis=axis)


@_op("gather_nd", exact=True)
def _gather_nd(a: _Args) -> np.ndarray:
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


@_op("scatter")
def _scatter(a: _Args) -> np.ndarray:
    data = np.array(a["data"], copy=True)
    axis = _axis(a.as_int("axis", 0), data.ndim)
    idx = _wrap(a["indices"], data.shape[axis])
    upd = np.asarray(a["updates"])
    # updates has shape data[:axis] + indices.shape + data[axis+1:]
    moved = np.moveaxis(data, axis, 0)
    upd_m = np.moveaxis(upd.reshape(data.shape[:axis] + (idx.size,) + data.shape[axis + 1 :]), axis, 0)
    _scatter_apply(moved, (idx.reshape(-1),), upd_m, a.as_str("mode", "add"))
    return data


@_op("scatter_along_axis")
def _scatter_along_axis(a: _Args) -> np.ndarray:
    data = np.array(a["data"], copy=True)
    axis = _axis(a.as_int("axis", 0), data.ndim)
    idx = _wrap(a["indices"], data.shape[axis])
    grids = list(np.indices(idx.shape, sparse=True))
    grids[axis] = idx
    _scatter_apply(data, tuple(grids), np.asarray(a["updates"]), a.as_str("mode", "add"))
    return data


@_op("scatter_nd")
def _scatter_nd(a: _Args) -> np.ndarray:
    data = np.array(a["data"], copy=True)
    idx = np.asarray(a["indices"]).astype(np.int64)
    k = idx.shape[-1]
    cols = tuple(_wrap(idx[..., j], data.shape[j]) for j in range(k))
    _scatter_apply(data, cols, np.asarray(a["updates"]), a.as_str("mode", "add"))
    return data


# -- activation quantisation (iOS17) -----------------------------------------------------------------


def _along(p: Any, rank: int, axis: int | None) -> np.ndarray:
    """A scalar or per-axis 1-D parameter shaped to broadcast along `axis` of a rank-`rank` tensor."""
    p = np.asarray(p)
    if p.ndim == 0 or axis is None:
        return p
    shape = [1] * rank
    shape[_axis(axis, rank)] = -1
    return p.reshape(shape)


@_op("dequantize")
def _dequantize(a: _Args) -> np.ndarray:
    x = np.asarray(a["input"]).astype(np.float32)
    axis = a.as_int("axis", 0) if a.has("axis") else None
    zp = a.get("zero_point")
    if zp is not None:
        x = x - _along(zp, x.ndim, axis).astype(np.float32)
    return x * _along(a["scale"], x.ndim, axis)


@_op("quantize")
def _quantize(a: _Args) -> np.ndarray:
    x = _fp(a["input"])
    axis = a.as_int("axis", 0) if a.has("axis") else None
    q = np.rint(x / _along(a["scale"], x.ndim, axis))
    zp = a.get("zero_point")
    if zp is not None:
        q = q + _along(zp, x.ndim, axis)
    info = np.iinfo(_dtype_by_name(a.as_str("output_dtype")).storage)
    return np.clip(q, info.min, info.max)


# -- states (iOS18) ----------------------------------------------------------------------------------


def _state(a: _Args, key: str) -> np.ndarray:
    """The caller's state array behind a state-typed input (written in place by the ops below)."""
    ref = a[key]
    if not isinstance(ref, _StateRef) or a.states is None:
        raise MilExecError(f"op {a.step.name!r} ({a.step.type}): input {key!r} is not a state")
    return a.states[ref.name]


@_op("read_state", exact=True)
def _read_state(a: _Args) -> np.ndarray:
    arr = _state(a, "input")
    return arr.astype(np.float32) if arr.dtype == np.float16 else arr.copy()


@_op("write_state")
def _write_state(a: _Args) -> tuple[()]:
    arr = _state(a, "input")
    arr[...] = np.asarray(a["data"]).astype(arr.dtype, copy=False)
    return ()


@_op("coreml_update_state", exact=True)  # the pymil spelling of write_state + read_state
def _coreml_update_state(a: _Args) -> np.ndarray:
    arr = _state(a, "state")
    value = np.asarray(a["value"])
    arr[...] = value.astype(arr.dtype, copy=False)
    return value


# -- compressed constants (evaluated once at load) ---------------------------------------------------


def _block_repeat(p: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Repeat a block-wise parameter along each axis until it covers `shape`."""
    for ax, (n, m) in enumerate(zip(shape, p.shape)):
        if m != n:
            if m == 0 or n % m:
                raise MilExecError(f"block parameter shape {p.shape} does not tile {tuple(shape)}")
            p = np.repeat(p, n // m, axis=ax)
    return p


@_op("constexpr_affine_dequantize")
def _affine_dequantize(a: _Args) -> np.ndarray:
    q = np.asarray(a["quantized_data"]).astype(np.float32)
    axis = a.as_int("axis", 0)
    zp = _along(a["zero_point"], q.ndim, axis).astype(np.float32)
    return (q - zp) * _along(a["scale"], q.ndim, axis)


@_op("constexpr_blockwise_shift_scale")
def _blockwise_shift_scale(a: _Args) -> np.ndarray:
    data = np.asarray(a["data"]).astype(np.float32)
    scale = np.asarray(a["scale"])
    if scale.ndim != data.ndim:
        raise MilExecError(f"op {a.step.name!r}: scale rank {scale.ndim} != data rank {data.ndim}")
    offset = a.get("offset")
    if offset is not None:
        data = data - _block_repeat(np.asarray(offset).astype(np.float32), data.shape)
    return data * _block_repeat(scale, data.shape)


@_op("constexpr_cast")
def _constexpr_cast(a: _Args) -> np.ndarray:
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
    ax = _axis(int(vector_axis or 0), k)
    out = np.moveaxis(out, -1, ax + 1)  # vector elements follow their index along vector_axis
    shape = list(indices.shape)
    shape[ax] *= vs
    return out.reshape(shape)


@_op("constexpr_lut_to_dense")
def _lut_to_dense(a: _Args) -> np.ndarray:
    lut = np.asarray(a["lut"])
    if a.has("shape"):  # iOS16: packed uint8 indices, a flat LUT and the output shape
        shape = a.as_ints("shape") or []
        nbits = int(round(math.log2(lut.size)))
        idx = _unpack_bits(np.asarray(a["indices"]), nbits, math.prod(shape), signed=False)
        return lut.reshape(-1)[idx].reshape(shape)
    va = a.get("vector_axis")
    return _lut_dense(np.asarray(a["indices"]), lut, None if va is None else int(np.asarray(va)))


def _sparse_dense(nonzero: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros(mask.shape, dtype=nonzero.dtype)
    out[mask != 0] = nonzero
    return out


@_op("constexpr_sparse_to_dense")
def _sparse_to_dense(a: _Args) -> np.ndarray:
    nonzero = np.asarray(a["nonzero_data"])
    if a.has("shape"):  # iOS16: mask is packed bits over the flattened output
        shape = a.as_ints("shape") or []
        bits = np.unpackbits(np.asarray(a["mask"]).astype(np.uint8), bitorder="little")[: math.prod(shape)]
        return _sparse_dense(nonzero, bits.reshape(shape))
    return _sparse_dense(nonzero, np.asarray(a["mask"]))


@_op("constexpr_lut_to_sparse")
def _lut_to_sparse(a: _Args) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(a["indices_mask"])
    va = a.get("vector_axis")
    va = None if va is None else int(np.asarray(va))
    dense = _lut_dense(_sparse_dense(np.asarray(a["indices_nonzero_data"]), mask), np.asarray(a["lut"]), va)
    if np.asarray(a["lut"]).shape[-1] > 1:
        mask = np.repeat(mask, np.asarray(a["lut"]).shape[-1], axis=_axis(va or 0, mask.ndim))
    return mask, dense[mask != 0].reshape(-1)


@_op("constexpr_sparse_blockwise_shift_scale")
def _sparse_blockwise(a: _Args) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(a["data_mask"])
    data = _sparse_dense(np.asarray(a["nonzero_data"]).astype(np.float32), mask)
    offset = a.get("offset")
    if offset is not None:
        data = data - _block_repeat(np.asarray(offset).astype(np.float32), data.shape)
    data = data * _block_repeat(np.asarray(a["scale"]), data.shape)
    return mask, data[mask != 0].reshape(-1)


SUPPORTED_OPS: frozenset[str] = frozenset(_OPS) | {"const"}
_CONSTEXPR_PREFIX = "constexpr_"


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StateRef:
    """Stands for a state-typed function input; state ops look the array up by name."""

    name: str


def _tensor_type(value_type: Any, where: str, path: Path) -> _TensorType | None:
    kind = value_type.WhichOneof("type")
    is_state = False
    if kind == "stateType":
        value_type, is_state = value_type.stateType.wrappedType, True
        kind = value_type.WhichOneof("type")
    if kind != "tensorType":
        return None  # lists / tuples / dicts only appear in control flow we do not run
    tt = value_type.tensorType
    code = int(tt.dataType)
    if code not in _PROTO_DTYPES:
        name = _PROTO_DTYPE_NAMES.get(code, f"code {code}")
        raise UnsupportedOpError([name], f"{path}: {where}", what="dtype")
    dims: list[int | None] = []
    for d in tt.dimensions:
        dims.append(int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None)
    shape = tuple(dims) if tt.rank >= 0 and len(dims) == tt.rank else None
    return _TensorType(_PROTO_DTYPES[code], shape, is_state)


class _Loader:
    def __init__(self, package: Path):
        self.package = package
        self.model_path, self.weights_dir = self._locate()
        self.blobs: dict[Path, _BlobFile] = {}

    def _locate(self) -> tuple[Path, Path]:
        manifest = self.package / "Manifest.json"
        if not self.package.is_dir():
            raise CorruptPackageError(self.package, "not an .mlpackage directory")
        try:
            info = json.loads(manifest.read_text(encoding="utf-8"))
            entries = info["itemInfoEntries"]
            root = entries[info["rootModelIdentifier"]]
            model_rel = root["path"]
        except FileNotFoundError:
            raise CorruptPackageError(manifest, "missing (not an .mlpackage?)") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CorruptPackageError(manifest, f"unreadable manifest ({type(e).__name__}: {e})") from None
        model_path = self.package / "Data" / model_rel
        weights_dir = model_path.parent / "weights"
        for entry in entries.values():
            if isinstance(entry, dict) and entry.get("name") == "weights" and "path" in entry:
                weights_dir = self.package / "Data" / entry["path"]
        return model_path, weights_dir

    def parse_model(self) -> Any:
        from coremltools.proto import Model_pb2
        from google.protobuf.message import DecodeError

        try:
            raw = self.model_path.read_bytes()
        except FileNotFoundError:
            raise CorruptPackageError(self.model_path, "model specification is missing") from None
        except OSError as e:
            raise CorruptPackageError(self.model_path, f"cannot read ({e.strerror or e})") from None
        model = Model_pb2.Model()
        try:
            model.ParseFromString(raw)
        except (DecodeError, ValueError, RuntimeError) as e:
            raise CorruptPackageError(self.model_path, f"not a valid Model protobuf ({e})") from None
        if model.WhichOneof("Type") != "mlProgram":
            raise CorruptPackageError(self.model_path, "not an ML program (mlProgram) model")
        return model

    def blob(self, file_name: str) -> _BlobFile:
        rel = file_name.split("@model_path/", 1)[-1]
        path = self.model_path.parent / rel
        if not path.exists():
            alt = self.weights_dir / Path(rel).name  # custom weights location in the manifest
            path = alt if alt.exists() else path
        if path not in self.blobs:
            if not path.exists():
                raise CorruptPackageError(path, "weight file is missing")
            self.blobs[path] = _BlobFile(path)
        return self.blobs[path]

    def value(self, spec: Any, where: str) -> Any:
        """Decode a MIL Value (immediate or blob) into storage representation."""
        tt = _tensor_type(spec.type, where, self.model_path)
        if tt is None:
            raise UnsupportedOpError(
                [spec.type.WhichOneof("type")], f"{self.model_path}: {where}", what="value type"
            )
        shape = tuple(0 if d is None else d for d in tt.shape or ())
        dt = tt.dtype
        kind = spec.WhichOneof("value")
        if kind == "blobFileValue":
            arr = self.blob(spec.blobFileValue.fileName).read(int(spec.blobFileValue.offset), dt, shape)
            return _to_storage(arr, dt)
        if kind != "immediateValue":
            raise CorruptPackageError(self.model_path, f"{where}: value has no data")
        imm = spec.immediateValue
        if imm.WhichOneof("value") != "tensor":
            raise UnsupportedOpError(
                [str(imm.WhichOneof("value"))], f"{self.model_path}: {where}", what="immediate value"
            )
        tv = imm.tensor
        field_name = tv.WhichOneof("value")
        count = math.prod(shape)
        if field_name == "bytes":
            raw = bytes(tv.bytes.values)
            if dt.nbits:
                arr = _unpack_bits(
                    np.frombuffer(raw, np.uint8), dt.nbits, count, signed=dt.name.startswith("int")
                )
            else:
                src = np.dtype(np.float16) if dt.name == "fp16" else dt.storage
                arr = np.frombuffer(raw, src)
        elif field_name == "strings":
            vals = list(tv.strings.values)
            return vals[0] if shape == () and vals else np.array(vals, dtype=object).reshape(shape)
        elif field_name is None:
            arr = np.zeros(0, dtype=dt.storage)
        else:
            arr = np.asarray(list(getattr(tv, field_name).values))
        if arr.size != count:
            raise CorruptPackageError(self.model_path, f"{where}: {arr.size} values for shape {shape}")
        return _to_storage(arr.reshape(shape), dt)


class MilProgram:
    """One function (normally ``main``) of a saved ML program, runnable with numpy."""

    def __init__(self) -> None:  # use MilProgram.load
        self.path = Path()
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.state_names: list[str] = []
        self.opset = ""
        self._input_types: dict[str, _TensorType] = {}
        self._state_types: dict[str, _TensorType] = {}
        self._input_specs: dict[str, Any] = {}
        self._consts: dict[str, Any] = {}
        self._weights: dict[str, tuple[np.ndarray, _TensorType | None]] = {}
        self._output_types: dict[str, _DType] = {}
        self._steps: list[_Step] = []
        self._histogram: Counter[str] = Counter()

    # -- loading -------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, function: str | None = None) -> MilProgram:
        """Parse an ``.mlpackage``; constants and compressed weights are materialised now.

        `function` picks one function of a multifunction package (iOS18); by default ``main``,
        or the package's default function when it has no ``main``."""
        prog = cls()
        prog.path = Path(path)
        loader = _Loader(prog.path)
        model = loader.parse_model()
        functions = model.mlProgram.functions
        if function is None:
            function = "main" if "main" in functions else model.description.defaultFunctionName or "main"
        if function not in functions:
            raise CorruptPackageError(
                loader.model_path, f"no function {function!r} (has {sorted(functions)})"
            )
        fn = functions[function]
        blocks = fn.block_specializations
        if fn.opset in blocks:
            block = blocks[fn.opset]
        elif len(blocks) == 1:
            block = next(iter(blocks.values()))
        else:
            raise CorruptPackageError(
                loader.model_path, f"function 'main' has no block for opset {fn.opset!r}"
            )
        prog.opset = fn.opset
        prog._histogram = Counter(op.type for op in block.operations)
        unsupported = [t for t in prog._histogram if t not in SUPPORTED_OPS]
        unsupported += [op.type for op in block.operations if len(op.blocks)]  # control flow
        if unsupported:
            raise UnsupportedOpError(unsupported, str(prog.path))

        for inp in fn.inputs:
            tt = _tensor_type(inp.type, f"input {inp.name!r}", loader.model_path)
            if tt is None:
                raise UnsupportedOpError(
                    [inp.type.WhichOneof("type")], f"{prog.path}: input {inp.name!r}", what="input type"
                )
            if tt.is_state:
                prog.state_names.append(inp.name)
                prog._state_types[inp.name] = tt
            else:
                prog.input_names.append(inp.name)
                prog._input_types[inp.name] = tt
        described = model.description.input
        for fd in model.description.functions:  # multifunction packages describe each function
            if fd.name == function:
                described = fd.input
        prog._input_specs = {f.name: f.type for f in described}
        prog.output_names = list(block.outputs)
        prog._build(block, loader)
        return prog

    def _build(self, block: Any, loader: _Loader) -> None:
        defined: set[str] = set(self.input_names) | set(self.state_names)
        states = {n: _StateRef(n) for n in self.state_names}
        last_use: dict[str, int] = {}
        model_file = loader.model_path
        for op in block.operations:
            name = _op_name(op)
            where = f"op {name!r} ({op.type})"
            outputs = [(o.name, _tensor_type(o.type, where, model_file)) for o in op.outputs]
            if op.type == "const":
                if "val" not in op.attributes or len(outputs) != 1:
                    raise CorruptPackageError(model_file, f"{where}: const without a value")
                value = loader.value(op.attributes["val"], where)
                self._consts[outputs[0][0]] = value
                if op.attributes["val"].WhichOneof("value") == "blobFileValue":
                    self._weights[outputs[0][0]] = (value, outputs[0][1])
                defined.add(outputs[0][0])
                continue
            inputs: dict[str, list[tuple[bool, Any]]] = {}
            for param, arg in op.inputs.items():
                bound: list[tuple[bool, Any]] = []
                for binding in arg.arguments:
                    if binding.WhichOneof("binding") == "name":
                        ref = binding.name
                        if ref not in defined:
                            raise CorruptPackageError(
                                model_file, f"{where}: input {param!r} uses undefined {ref!r}"
                            )
                        if ref in self._consts:
                            bound.append((False, self._consts[ref]))
                        elif ref in states:
                            bound.append((False, states[ref]))
                        else:
                            bound.append((True, ref))
                    else:
                        bound.append((False, loader.value(binding.value, f"{where} input {param!r}")))
                inputs[param] = bound
            for param, attr in op.attributes.items():
                # iOS16/17 constexpr ops carry their parameters as attributes, not inputs.
                if param != "name" and param not in inputs:
                    inputs[param] = [(False, loader.value(attr, f"{where} attribute {param!r}"))]
            step = _Step(op.type, name, inputs, outputs)
            if op.type.startswith(_CONSTEXPR_PREFIX):
                # Weights: decompress once and keep the dense result with the other constants.
                values = self._run_step(step, {}, None)
                for (out_name, tt), v in zip(outputs, values):
                    self._consts[out_name] = v
                    self._weights[out_name] = (v, tt)
                    defined.add(out_name)
                continue
            for is_var, ref in (b for bs in inputs.values() for b in bs):
                if is_var:
                    last_use[ref] = len(self._steps)
            self._steps.append(step)
            defined.update(n for n, _ in outputs)
        for out in self.output_names:
            if out not in defined:
                raise CorruptPackageError(model_file, f"program output {out!r} is never computed")
        keep = set(self.output_names)
        for ref, i in last_use.items():
            if ref not in keep:
                self._steps[i].drop.append(ref)
        # Steps hold their constant inputs directly; keep only constants the program returns, and
        # only weights some op reads, so quantized sources of dequantized weights are freed.
        used = {
            id(ref) for st in self._steps for bs in st.inputs.values() for is_var, ref in bs if not is_var
        }
        self._consts = {n: v for n, v in self._consts.items() if n in keep}
        self._weights = {n: w for n, w in self._weights.items() if id(w[0]) in used or n in keep}
        types = {n: t for s in self._steps for n, t in s.outputs if t is not None}
        types.update((n, t) for n, t in self._input_types.items())
        self._output_types = {n: types[n].dtype for n in self.output_names if n in types}

    # -- running -------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"MilProgram({str(self.path)!r}, opset={self.opset}, inputs={self.input_names}, "
            f"outputs={self.output_names}, states={self.state_names}, ops={len(self._steps)})"
        )

    def input_shape(self, name: str) -> tuple[int, ...]:
        """The declared shape of input `name` (its default shape when the input is flexible)."""
        return tuple(self._input_types[name].shape)

    def new_state(self) -> dict[str, np.ndarray]:
        """Zero-filled states with the declared shapes and dtypes (fp16 states are float16)."""
        out = {}
        for name, tt in self._state_types.items():
            if tt.shape is None or any(d is None for d in tt.shape):
                raise MilExecError(f"{self.path}: state {name!r} has no fixed shape")
            out[name] = np.zeros(tt.shape, dtype=tt.dtype.public)  # type: ignore[arg-type]
        return out

    def weights(self) -> dict[str, np.ndarray]:
        """The dense weight tensors the ops read, by MIL name: blob-file constants and the outputs
        of ``constexpr_*`` ops (dequantized / de-palettized / densified), fp16 as float16."""
        out = {}
        for name, (arr, tt) in self._weights.items():
            out[name] = (
                arr.astype(tt.dtype.public) if tt is not None and arr.dtype != np.object_ else arr.copy()
            )
        return out

    def op_histogram(self) -> dict[str, int]:
        """How many ops of each type the ``main`` block holds (consts included)."""
        return dict(self._histogram)

    def predict(
        self, inputs: dict[str, np.ndarray], state: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Run ``main``. `state` (from :meth:`new_state`) is updated in place; omitted, a fresh
        zero state is used and discarded."""
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self._input_types]
        if missing or extra:
            raise MilExecError(
                f"{self.path}: inputs expected {self.input_names}, missing {missing}, unexpected {extra}"
            )
        env: dict[str, Any] = {n: self._check_input(n, v) for n, v in inputs.items()}
        states = self._check_state(state)
        for step in self._steps:
            values = self._run_step(step, env, states)
            for (out_name, _), v in zip(step.outputs, values):
                env[out_name] = v
            for ref in step.drop:
                env.pop(ref, None)
        result = {}
        for out in self.output_names:
            v = env[out] if out in env else self._consts[out]
            result[out] = self._public(out, v)
        return result

    def _public(self, name: str, v: Any) -> np.ndarray:
        dt = self._output_types.get(name)
        arr = np.asarray(v)
        if dt is not None and arr.dtype != np.object_:
            return arr.astype(dt.public)  # copies: never hands out a cached constant
        return np.array(arr, copy=True)

    def _check_input(self, name: str, value: Any) -> np.ndarray:
        tt = self._input_types[name]
        arr = np.asarray(value)
        if tt.dtype.storage.kind in "iub" and arr.dtype.kind == "f":
            raise MilExecError(f"{self.path}: input {name!r} must be {tt.dtype.name}, got {arr.dtype}")
        if tt.shape is not None:
            ok = arr.ndim == len(tt.shape) and all(d is None or d == s for d, s in zip(tt.shape, arr.shape))
            if not ok:
                raise MilExecError(
                    f"{self.path}: input {name!r} has shape {arr.shape}, program expects {_fmt(tt.shape)}"
                )
        self._check_flexible_shape(name, arr.shape)
        return _to_storage(arr, tt.dtype)

    def _check_flexible_shape(self, name: str, shape: tuple[int, ...]) -> None:
        spec = self._input_specs.get(name)
        if spec is None or spec.WhichOneof("Type") != "multiArrayType":
            return
        ma = spec.multiArrayType
        flex = ma.WhichOneof("ShapeFlexibility")
        if flex == "enumeratedShapes":
            allowed = [tuple(s.shape) for s in ma.enumeratedShapes.shapes]
            if tuple(shape) not in allowed:
                raise MilExecError(
                    f"{self.path}: input {name!r} has shape {shape}, allowed shapes are {allowed}"
                )
        elif flex == "shapeRange":
            for dim, r in zip(shape, ma.shapeRange.sizeRanges):
                upper = r.upperBound if r.upperBound >= 0 else None
                if dim < r.lowerBound or (upper is not None and dim > upper):
                    raise MilExecError(
                        f"{self.path}: input {name!r} has shape {shape}, outside the declared ranges"
                    )

    def _check_state(self, state: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        if not self.state_names:
            return None
        if state is None:
            return self.new_state()
        for name, tt in self._state_types.items():
            arr = state.get(name)
            if not isinstance(arr, np.ndarray):
                raise MilExecError(f"{self.path}: state {name!r} is missing (use new_state())")
            if arr.dtype != tt.dtype.public or (tt.shape is not None and arr.shape != tt.shape):
                raise MilExecError(
                    f"{self.path}: state {name!r} is {arr.dtype}{list(arr.shape)}, "
                    f"program declares {tt.dtype.public}{_fmt(tt.shape)}"
                )
        return state

    def _run_step(
        self, step: _Step, env: dict[str, Any], states: dict[str, np.ndarray] | None
    ) -> tuple[Any, ...]:
        values = {p: [env[ref] if is_var else ref for is_var, ref in bs] for p, bs in step.inputs.items()}
        args = _Args(step, values, states)
        try:
            result = _OPS[step.type](args)
        except MilExecError:
            raise
        except Exception as e:  # numpy errors: say which op, keep the cause
            raise MilExecError(
                f"{self.path}: op {step.name!r} ({step.type}) failed: {type(e).__name__}: {e}"
            ) from e
        results = result if isinstance(result, tuple) else (result,)
        if len(results) != len(step.outputs):
            raise MilExecError(
                f"op {step.name!r} ({step.type}): {len(results)} results for {len(step.outputs)} outputs"
            )
        return tuple(self._coerce(step, i, v) for i, v in enumerate(results))

    def _coerce(self, step: _Step, i: int, value: Any) -> Any:
        """Bring an op result to its declared type and check its declared shape."""
        name, tt = step.outputs[i]
        if tt is None:
            return value
        arr = np.asarray(value)
        if tt.dtype.name == "fp16" and step.type in _EXACT_OPS and arr.dtype == np.float32:
            pass  # values were fp16 already; moving them cannot create new ones
        else:
            arr = _to_storage(arr, tt.dtype)
        if tt.shape is not None:
            if arr.ndim != len(tt.shape) or any(
                d is not None and d != s for d, s in zip(tt.shape, arr.shape)
            ):
                raise MilExecError(
                    f"{self.path}: op {step.name!r} ({step.type}) output {name!r} has shape {arr.shape}, "
                    f"program declares {_fmt(tt.shape)}"
                )
        return arr


def _op_name(op: Any) -> str:
    attr = op.attributes.get("name") if "name" in op.attributes else None
    if attr is not None and attr.immediateValue.tensor.strings.values:
        return str(attr.immediateValue.tensor.strings.values[0])
    return op.outputs[0].name if op.outputs else op.type


def _fmt(shape: tuple[int | None, ...] | None) -> str:
    if shape is None:
        return "[*]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def predict_with_coreml(path: str | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reference prediction with Core ML itself (macOS only), for comparison with MilProgram."""
    if sys.platform != "darwin":
        raise MilExecError("Core ML prediction needs macOS; use MilProgram.load(path).predict(inputs)")
    import coremltools as ct

    model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    return {k: np.asarray(v) for k, v in model.predict(inputs).items()}
