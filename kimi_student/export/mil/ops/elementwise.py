"""Elementwise ops: binary arithmetic and comparisons, unary math and activations, softmax, cast."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from kimi_student.export.errors import MilExecError
from kimi_student.export.mil.dtypes import dtype_by_name
from kimi_student.export.mil.ops.base import OpFn, channel_param, float_view, op, softmax
from kimi_student.export.mil.steps import Args

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


def _binary(fn: Callable[[Any, Any], Any]) -> OpFn:
    return lambda a: fn(np.asarray(a["x"]), np.asarray(a["y"]))


for _name, _fn in _BINARY.items():
    op(_name)(_binary(_fn))
op("maximum", exact=True)(_binary(np.maximum))
op("minimum", exact=True)(_binary(np.minimum))


@op("real_div")
def _real_div(a: Args) -> np.ndarray:
    # True division even for int32 operands; the declared int output type truncates the result,
    # as coremltools' constant folding (operator.truediv + astype) does.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.true_divide(a["x"], a["y"])


@op("pow")
def _pow(a: Args) -> np.ndarray:
    x, y = np.asarray(a["x"]), np.asarray(a["y"])
    if x.dtype.kind in "iu" and y.dtype.kind in "iu":
        return np.power(x.astype(np.int64), y.astype(np.int64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.power(float_view(x), float_view(y))


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
    def run(a: Args) -> Any:
        with np.errstate(all="ignore"):  # domain errors give nan/inf, as on device
            return fn(float_view(a["x"]))

    op(name, exact=exact)(run)


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


@op("abs", exact=True)
def _abs(a: Args) -> np.ndarray:
    return np.abs(a["x"])


@op("neg", exact=True)  # not emitted by coremltools 9 (it uses mul by -1) but cheap to accept
def _neg(a: Args) -> np.ndarray:
    return np.negative(a["x"])


@op("logical_not")
def _logical_not(a: Args) -> np.ndarray:
    return np.logical_not(a["x"])


@op("rsqrt")
def _rsqrt(a: Args) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 / np.sqrt(float_view(a["x"]) + a.as_float("epsilon", 1e-12))


@op("inverse")
def _inverse(a: Args) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 1.0 / (float_view(a["x"]) + a.as_float("epsilon", 1e-4))


@op("log")
def _log(a: Args) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(float_view(a["x"]) + a.as_float("epsilon", 1e-45))


@op("clip")
def _clip(a: Args) -> np.ndarray:
    return np.minimum(np.maximum(a["x"], a["alpha"]), a["beta"])


@op("threshold")
def _threshold(a: Args) -> np.ndarray:
    return np.maximum(a["x"], a["alpha"])


@op("gelu")
def _gelu(a: Args) -> np.ndarray:
    x, mode = float_view(a["x"]), a.as_str("mode", "EXACT")
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x / (1.0 + np.exp(-1.702 * x))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


@op("elu")
def _elu(a: Args) -> np.ndarray:
    x = float_view(a["x"])
    return np.where(x > 0, x, a.as_float("alpha", 1.0) * np.expm1(np.minimum(x, 0)))


@op("leaky_relu")
def _leaky_relu(a: Args) -> np.ndarray:
    x = float_view(a["x"])
    return np.where(x >= 0, x, a.as_float("alpha", 0.01) * x)


@op("linear_activation")
def _linear_activation(a: Args) -> np.ndarray:
    return a.as_float("alpha", 1.0) * float_view(a["x"]) + a.as_float("beta", 0.0)


@op("sigmoid_hard")
def _sigmoid_hard(a: Args) -> np.ndarray:
    return np.clip(a.as_float("alpha", 0.2) * float_view(a["x"]) + a.as_float("beta", 0.5), 0.0, 1.0)


@op("scaled_tanh")
def _scaled_tanh(a: Args) -> np.ndarray:
    return a.as_float("alpha", 1.0) * np.tanh(a.as_float("beta", 1.0) * float_view(a["x"]))


@op("clamped_relu")
def _clamped_relu(a: Args) -> np.ndarray:
    x = float_view(a["x"])
    return np.minimum(np.where(x >= 0, x, a.as_float("alpha", 0.0) * x), a.as_float("beta", 6.0))


@op("thresholded_relu")
def _thresholded_relu(a: Args) -> np.ndarray:
    x = float_view(a["x"])
    return np.where(x > a.as_float("alpha", 1.0), x, 0.0)


@op("prelu")
def _prelu(a: Args) -> np.ndarray:
    x = float_view(a["x"])
    return np.where(x >= 0, x, channel_param(a["alpha"], x.ndim) * x)


@op("softplus_parametric")
def _softplus_parametric(a: Args) -> np.ndarray:
    x = float_view(a["x"])
    return channel_param(a["alpha"], x.ndim) * np.logaddexp(0.0, channel_param(a["beta"], x.ndim) * x)


@op("softmax")
def _softmax_op(a: Args) -> np.ndarray:
    return softmax(float_view(a["x"]), a.as_int("axis", -1))


@op("cast")
def _cast(a: Args) -> np.ndarray:
    # The post-op coercion to the declared output type does the conversion (wrapping, truncation,
    # fp16 rounding); the op itself only checks that dtype and declaration agree.
    dt = dtype_by_name(a.as_str("dtype"))
    declared = a.out_dtype()
    if declared is not None and declared.name != dt.name:
        raise MilExecError(f"op {a.step.name!r}: cast to {dt.name} declares output type {declared.name}")
    x = np.asarray(a["x"])
    if dt.storage.kind in "iu" and x.dtype.kind == "f":
        # float -> int truncates toward zero; go through int64 so the later narrowing wraps.
        return np.trunc(x).astype(np.int64)
    return x


@op("identity", exact=True)
def _identity(a: Args) -> np.ndarray:
    return a["x"]
