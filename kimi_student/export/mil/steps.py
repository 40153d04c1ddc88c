"""The program as the executor holds it: typed values, steps with pre-resolved inputs, and the
argument view through which an op reads its inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kimi_student.export.errors import MilExecError
from kimi_student.export.mil.dtypes import DType


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: tuple[int | None, ...] | None  # None: unknown rank; None entries: unknown dims
    is_state: bool = False


@dataclass
class Step:
    """One op, with inputs pre-resolved to constants or variable names."""

    type: str
    name: str
    inputs: dict[str, list[tuple[bool, Any]]]  # param -> [(is_var, var name or constant)]
    outputs: list[tuple[str, TensorType | None]]
    drop: list[str] = field(default_factory=list)  # variables whose last use is this op


class Args:
    """The resolved inputs of one op, with small typed accessors for its constant parameters."""

    __slots__ = ("step", "values", "out_types", "states", "in_place")

    def __init__(
        self,
        step: Step,
        values: dict[str, list[Any]],
        states: dict[str, np.ndarray] | None,
        in_place: bool = False,
    ):
        self.step, self.values, self.states = step, values, states
        self.out_types = [t for _, t in step.outputs]
        # True when the input the op writes (program.IN_PLACE) dies at this op and nothing else sees its
        # memory: the op may write into it
        self.in_place = in_place

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

    def out_dtype(self, i: int = 0) -> DType | None:
        t = self.out_types[i] if i < len(self.out_types) else None
        return t.dtype if t is not None else None


@dataclass(frozen=True)
class StateRef:
    """Stands for a state-typed function input; state ops look the array up by name."""

    name: str
