"""Other layouts and ops: the ANE (B, C, 1, S) block and an op zoo beyond the plain decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ct = pytest.importorskip("coremltools")

from kimi_student.export.mil import MilProgram  # noqa: E402
from tests.integration.export.mil.conversion import CONVERTER_CHATTER, convert, run, seeded, torch_logits  # noqa: E402
from tests.integration.export.mil.models import DIM, AneBlock, OpZoo  # noqa: E402

pytestmark = [*CONVERTER_CHATTER, pytest.mark.slow]


@pytest.mark.parametrize("precision", ["FLOAT32", "FLOAT16"])
def test_ane_layout_block(pkgdir: Path, precision: str) -> None:
    module = seeded(AneBlock)
    x = np.random.default_rng(2).standard_normal((1, DIM, 1, 8)).astype(np.float32)
    mask = np.triu(np.full((8, 8), -1e4, np.float32), k=1).T.reshape(1, 8, 1, 8).copy()
    path = pkgdir / f"ane_{precision}.mlpackage"
    convert(
        module,
        (torch.from_numpy(x), torch.from_numpy(mask)),
        path,
        [ct.TensorType(name="x", shape=x.shape), ct.TensorType(name="mask", shape=mask.shape)],
        precision=getattr(ct.precision, precision),
        target=ct.target.iOS18,
    )
    prog = MilProgram.load(path)
    assert "conv" in prog.op_histogram()
    out = run(prog, x=x, mask=mask).astype(np.float32)
    ref = torch_logits(module, x, mask)
    # fp32: coremltools' fuse_elementwise_to_batchnorm turns `y * w + b` into batch_norm(mean=0,
    # var=1, eps=1e-5), a 5e-6 relative change that Core ML computes too; the bound allows for it.
    tol = (1e-4 if precision == "FLOAT32" else 5e-3) * np.abs(ref).max()
    assert np.abs(out - ref).max() < tol


def test_op_zoo_fp32(pkgdir: Path) -> None:
    module = seeded(OpZoo)
    x = np.random.default_rng(3).standard_normal((1, 8, DIM)).astype(np.float32)
    ids = np.array([[3, 0, 31, 7]], np.int32)
    path = pkgdir / "zoo.mlpackage"
    convert(
        module,
        (torch.from_numpy(x), torch.from_numpy(ids)),
        path,
        [ct.TensorType(name="x", shape=x.shape), ct.TensorType(name="ids", shape=ids.shape, dtype=np.int32)],
    )
    prog = MilProgram.load(path)
    outs = prog.predict({"x": x, "ids": ids})
    with torch.no_grad():
        refs = [r.numpy() for r in module(torch.from_numpy(x), torch.from_numpy(ids))]
    assert len(outs) == len(refs)
    for name, (out, ref) in zip(prog.output_names, zip(outs.values(), refs)):
        assert out.shape == ref.shape, name
        if ref.dtype.kind in "iu":
            assert (out == ref).all(), name
        else:
            assert np.abs(out - ref).max() < 1e-4 * max(1.0, np.abs(ref).max()), name
