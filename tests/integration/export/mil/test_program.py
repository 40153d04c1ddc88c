"""The program's calling contract: clear input errors, speed, and Core ML itself as the reference on macOS."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")

from kimi_student.export.mil import MilExecError, MilProgram, predict_with_coreml  # noqa: E402
from tests.integration.export.mil.conversion import CONVERTER_CHATTER, run  # noqa: E402
from tests.integration.export.mil.models import VOCAB  # noqa: E402

pytestmark = [*CONVERTER_CHATTER, pytest.mark.slow]


def test_bad_inputs_are_clear(fp32_pkg: Path, token_ids: np.ndarray) -> None:
    prog = MilProgram.load(fp32_pkg)
    with pytest.raises(MilExecError, match="missing"):
        prog.predict({})
    with pytest.raises(MilExecError, match=r"shape \(1, 5\)"):
        prog.predict({"ids": token_ids[:, :5]})
    with pytest.raises(MilExecError, match="must be int32"):
        prog.predict({"ids": token_ids.astype(np.float32)})
    assert run(prog, ids=token_ids.astype(np.int64)).shape == (1, 8, VOCAB)  # safe int widening is fine


def test_speed_of_tiny_model(fp16_pkg: Path, token_ids: np.ndarray) -> None:
    prog = MilProgram.load(fp16_pkg)
    prog.predict({"ids": token_ids})
    t0 = time.perf_counter()
    for _ in range(20):
        prog.predict({"ids": token_ids})
    ms = (time.perf_counter() - t0) / 20 * 1000
    assert ms < 100, f"{ms:.1f} ms per forward"  # ~1 ms on a laptop core; generous for slow CI


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML itself predicts on macOS")
def test_coreml_reference_needs_macos(fp32_pkg: Path, token_ids: np.ndarray) -> None:
    with pytest.raises(MilExecError, match="needs macOS"):
        predict_with_coreml(fp32_pkg, {"ids": token_ids})


@pytest.mark.skipif(sys.platform != "darwin", reason="needs Core ML (macOS)")
def test_matches_coreml_on_macos(fp32_pkg: Path, fp16_pkg: Path, token_ids: np.ndarray) -> None:
    for path, tol in ((fp32_pkg, 1e-3), (fp16_pkg, 5e-2)):
        ours = run(MilProgram.load(path), ids=token_ids).astype(np.float32)
        theirs = next(iter(predict_with_coreml(path, {"ids": token_ids}).values())).astype(np.float32)
        assert np.abs(ours - theirs).max() < tol * np.abs(theirs).max()
