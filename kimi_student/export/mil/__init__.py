"""Run a saved Core ML ML program (``.mlpackage``) with numpy, on any OS.

coremltools converts, quantizes and saves ``.mlpackage`` files on Linux but only macOS can predict
with them (DESIGN.md section 6). This package reads the package itself (Manifest.json, the Model
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
fails with :class:`CorruptPackageError` naming the file (both from ``export.errors``).

Layout: ``dtypes`` and ``blob`` read stored values, ``steps`` holds the program as run, ``ops/`` has
one module per op family registering into one table, ``loader`` parses the package and ``program``
builds and runs :class:`MilProgram`.
"""

from __future__ import annotations

from kimi_student.export.errors import CorruptPackageError, MilExecError, UnsupportedOpError
from kimi_student.export.mil.blob import read_blob
from kimi_student.export.mil.ops import SUPPORTED_OPS
from kimi_student.export.mil.program import MilProgram, predict_with_coreml

__all__ = [
    "CorruptPackageError",
    "MilExecError",
    "MilProgram",
    "SUPPORTED_OPS",
    "UnsupportedOpError",
    "predict_with_coreml",
    "read_blob",
]
