"""States (iOS18): ops that read and write the caller's state arrays in place."""

from __future__ import annotations

import numpy as np

from kimi_student.export.errors import MilExecError
from kimi_student.export.mil.dtypes import store_fp16, widen_fp16
from kimi_student.export.mil.ops.base import op
from kimi_student.export.mil.steps import Args, StateRef


def _state(a: Args, key: str) -> np.ndarray:
    """The caller's state array behind a state-typed input (written in place by the ops below)."""
    ref = a[key]
    if not isinstance(ref, StateRef) or a.states is None:
        raise MilExecError(f"op {a.step.name!r} ({a.step.type}): input {key!r} is not a state")
    return a.states[ref.name]


@op("read_state", exact=True)
def _read_state(a: Args) -> np.ndarray:
    arr = _state(a, "input")
    return widen_fp16(arr) if arr.dtype == np.float16 else arr.copy()


def _store(arr: np.ndarray, value: np.ndarray) -> None:
    if arr.dtype == np.float16:
        store_fp16(arr, value)
    else:
        arr[...] = value.astype(arr.dtype, copy=False)


@op("write_state")
def _write_state(a: Args) -> tuple[()]:
    _store(_state(a, "input"), np.asarray(a["data"]))
    return ()


@op("coreml_update_state", exact=True)  # the pymil spelling of write_state + read_state
def _coreml_update_state(a: Args) -> np.ndarray:
    arr = _state(a, "state")
    value = np.asarray(a["value"])
    _store(arr, value)
    return value
