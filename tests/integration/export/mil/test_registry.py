"""The op registry is complete however the executor is imported: every op family module registers."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import kimi_student.export.mil.ops as ops

ROOT = Path(ops.__file__).resolve().parents[4]  # the checkout whose package the test imported


def test_every_op_family_is_imported_by_the_program() -> None:
    """A fresh interpreter that imports only MilProgram sees every family module, so none is left out."""
    families = sorted(m.name for m in pkgutil.iter_modules(ops.__path__))
    code = (
        "import sys; from kimi_student.export.mil import MilProgram; "
        "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('kimi_student.export.mil.ops.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == str(families)
    assert {
        "add",
        "conv",
        "layer_norm",
        "reduce_sum",
        "gather",
        "quantize",
        "read_state",
    } <= ops.SUPPORTED_OPS
