"""The ops the executor implements, one module per op family. Importing this package imports every
family, so the registry is complete whichever module a caller imports first."""

from __future__ import annotations

from kimi_student.export.mil.ops import (  # noqa: F401  (imported to register their ops)
    constexpr,
    elementwise,
    gather_scatter,
    linalg,
    norm,
    quant,
    reduce,
    shape,
    state,
)
from kimi_student.export.mil.ops.base import EXACT_OPS, OPS, OpFn, op

__all__ = ["EXACT_OPS", "OPS", "SUPPORTED_OPS", "OpFn", "op"]

SUPPORTED_OPS: frozenset[str] = frozenset(OPS) | {"const"}
