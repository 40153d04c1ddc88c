"""Whole decoders through the executor against torch: fp32 (export and trace), fp16 rounding,
flexible sequence lengths and multifunction packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

ct = pytest.importorskip("coremltools")

from kimi_student.export.coreml import save_multifunction_validated_once  # noqa: E402
from kimi_student.export.mil import CorruptPackageError, MilExecError, MilProgram  # noqa: E402
from tests.integration.export.mil.conversion import (  # noqa: E402
    CONVERTER_CHATTER,
    convert,
    ids_input,
    run,
    seeded,
    torch_logits,
)
from tests.integration.export.mil.models import MAXLEN, VOCAB, TinyLlama  # noqa: E402

pytestmark = [*CONVERTER_CHATTER, pytest.mark.slow]


def test_fp32_export_matches_torch(fp32_pkg: Path, llama: nn.Module, token_ids: np.ndarray) -> None:
    prog = MilProgram.load(fp32_pkg)
    assert prog.input_names == ["ids"] and prog.state_names == [] and len(prog.output_names) == 1
    hist = prog.op_histogram()
    assert {"gather", "linear", "matmul", "softmax", "rsqrt", "silu", "concat", "split"} <= set(hist)
    out = run(prog, ids=token_ids)
    ref = torch_logits(llama, token_ids)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-4


def test_fp32_trace_matches_torch(pkgdir: Path, llama: nn.Module, token_ids: np.ndarray) -> None:
    path = pkgdir / "llama_trace.mlpackage"
    convert(llama, (torch.from_numpy(token_ids),), path, [ids_input()], via="trace", target=ct.target.iOS16)
    out = run(MilProgram.load(path), ids=token_ids)
    assert np.abs(out - torch_logits(llama, token_ids)).max() < 1e-4


def test_fp16_matches_torch_within_fp16_tolerance(
    fp16_pkg: Path, llama: nn.Module, token_ids: np.ndarray
) -> None:
    prog = MilProgram.load(fp16_pkg)
    assert "cast" in prog.op_histogram()  # int32 ids -> int16 for gather, fp16 math throughout
    out = run(prog, ids=token_ids)
    ref = torch_logits(llama, token_ids)
    assert out.dtype == np.float16
    scale = np.abs(ref).max()
    err = np.abs(out.astype(np.float32) - ref).max()
    # fp16 keeps ~3 decimal digits; two blocks of rounded activations stay within a few ulps of
    # the logit scale (measured ~6e-4 relative).
    assert err < 5e-3 * scale, err
    assert (out.argmax(-1) == ref.argmax(-1)).all()
    # ... and the rounding really happens: fp32 evaluation of this program lands ~1e-7 relative.
    assert err > 1e-5 * scale


@pytest.mark.extra
def test_range_dim_sequence_length(pkgdir: Path) -> None:
    """A RangeDim input (any length in a range): a shape kind the product's packages never use (they
    enumerate), so a second proof of dynamic shapes beside test_enumerated_sequence_lengths."""
    module = seeded(TinyLlama, maxlen=MAXLEN)
    ids = np.arange(8, dtype=np.int32)[None] % VOCAB
    path = pkgdir / "llama_range.mlpackage"
    seq = torch.export.Dim("seq", min=2, max=MAXLEN - 1)
    convert(
        module,
        (torch.from_numpy(ids),),
        path,
        [ids_input(ct.RangeDim(2, MAXLEN - 1))],
        dynamic_shapes={"ids": {1: seq}},
    )
    prog = MilProgram.load(path)
    for n in (3, 8, 11):
        x = np.random.default_rng(n).integers(0, VOCAB, (1, n)).astype(np.int32)
        out = run(prog, ids=x)
        assert out.shape == (1, n, VOCAB)
        assert np.abs(out - torch_logits(module, x)).max() < 1e-4
    with pytest.raises(MilExecError, match="outside the declared ranges"):
        prog.predict({"ids": np.zeros((1, MAXLEN + 3), np.int32)})


def test_enumerated_sequence_lengths(pkgdir: Path) -> None:
    module = seeded(TinyLlama, maxlen=MAXLEN)
    ids = np.arange(8, dtype=np.int32)[None] % VOCAB
    seq = torch.export.Dim("seq", min=2, max=MAXLEN - 1)
    # Enumerated shapes (what the ANE wants): listed lengths run, others are refused.
    path = pkgdir / "llama_enum.mlpackage"
    convert(
        module,
        (torch.from_numpy(ids),),
        path,
        [
            ct.TensorType(
                name="ids", shape=ct.EnumeratedShapes(shapes=[(1, 4), (1, 8)], default=(1, 8)), dtype=np.int32
            )
        ],
        dynamic_shapes={"ids": {1: seq}},
    )
    prog = MilProgram.load(path)
    x = ids[:, :4]
    assert np.abs(run(prog, ids=x) - torch_logits(module, x)).max() < 1e-4
    with pytest.raises(MilExecError, match="allowed shapes"):
        prog.predict({"ids": ids[:, :5]})


def test_multifunction_package(pkgdir: Path, fp32_pkg: Path, llama: nn.Module, token_ids: np.ndarray) -> None:
    """iOS18 multifunction packages (e.g. prefill + decode shapes sharing weights)."""
    short = pkgdir / "llama_short.mlpackage"
    convert(llama, (torch.from_numpy(token_ids[:, :4]),), short, [ids_input(4)], target=ct.target.iOS18)
    desc = ct.utils.MultiFunctionDescriptor()
    desc.add_function(str(fp32_pkg), src_function_name="main", target_function_name="full")
    desc.add_function(str(short), src_function_name="main", target_function_name="short")
    desc.default_function_name = "short"
    path = pkgdir / "llama_multi.mlpackage"
    save_multifunction_validated_once(desc, path)
    for function, ids in (("full", token_ids), ("short", token_ids[:, :4]), (None, token_ids[:, :4])):
        out = run(MilProgram.load(path, function=function), ids=ids)
        assert np.abs(out - torch_logits(llama, ids)).max() < 1e-4
    with pytest.raises(CorruptPackageError, match="no function 'prefill'"):
        MilProgram.load(path, function="prefill")
