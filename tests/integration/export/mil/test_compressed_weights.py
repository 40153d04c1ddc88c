"""Compressed weights: INT8 programs against torch on the same dequantized weights, and LUT,
INT4-block and sparse weights decoded exactly like coremltools' own decoder."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

ct = pytest.importorskip("coremltools")

from kimi_student.export.mil import MilProgram  # noqa: E402
from tests.integration.export.mil.conversion import CONVERTER_CHATTER, run, torch_logits  # noqa: E402
from tests.integration.export.mil.models import VOCAB  # noqa: E402

cto = pytest.importorskip("coremltools.optimize.coreml")


pytestmark = CONVERTER_CHATTER


def _dequantized_weights(path: Path) -> list[np.ndarray]:
    """Dense weights of every constexpr op, decoded by coremltools' own loader (its C++ blob reader)
    and dequantized here by hand: (q - zero_point) * scale per output channel."""
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    spec = ct.utils.load_spec(str(path))
    prog = milproto_load(spec, spec.specificationVersion, str(path / "Data/com.apple.CoreML/weights"))
    out = []
    for op in prog.functions["main"].operations:
        if op.op_type == "constexpr_affine_dequantize":
            q, zp, scale = (op.quantized_data.val, op.zero_point.val, op.scale.val)
            axis = int(op.axis.val)
            shape = [1] * q.ndim
            shape[axis] = -1
            zp = np.asarray(zp, np.float32).reshape(shape if np.ndim(zp) else ())
            scale = np.asarray(scale, np.float32).reshape(shape if np.ndim(scale) else ())
            w = (torch.from_numpy(q.astype(np.float32)) - torch.from_numpy(zp)) * torch.from_numpy(scale)
        elif op.op_type == "constexpr_blockwise_shift_scale":
            q, scale = op.data.val, np.asarray(op.scale.val, np.float32)
            assert scale.shape[1:] == (1,) and op.offset is None  # per output channel, symmetric
            w = torch.from_numpy(q.astype(np.float32)) * torch.from_numpy(scale)
        else:
            continue
        assert q.dtype == np.int8
        out.append(
            w.to(torch.float16 if op.outputs[0].dtype.__name__ == "fp16" else torch.float32).float().numpy()
        )
    assert out
    return out


def _with_weights(module: nn.Module, dense: list[np.ndarray]) -> nn.Module:
    """A copy of `module` whose 2-D weights are replaced by the nearest dequantized tensor."""
    clone = copy.deepcopy(module)
    with torch.no_grad():
        for p in clone.parameters():
            if p.ndim != 2:
                continue
            cands = [w for w in dense if w.shape == tuple(p.shape)]
            best = min(cands, key=lambda w: float(np.abs(w - p.numpy()).max()))
            assert np.abs(best - p.numpy()).max() < 0.05  # within a quantization step
            p.copy_(torch.from_numpy(best))
    return clone


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "precision", "constexpr"),
    [
        # iOS17's op: a second proof of the same matching, for a target the product never writes
        pytest.param("iOS17", "FLOAT32", "constexpr_affine_dequantize", marks=pytest.mark.extra),
        ("iOS18", "FLOAT16", "constexpr_blockwise_shift_scale"),
    ],
)
def test_int8_weights_match_torch_with_the_same_dequantized_weights(
    pkgdir: Path,
    llama: nn.Module,
    llama_mlmodel: Any,
    token_ids: np.ndarray,
    target: str,
    precision: str,
    constexpr: str,
) -> None:
    mlmodel = llama_mlmodel(target, precision)
    config = cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(
            # Above the 64-element RoPE/mask tables: only the 2-D weights (>= 512 elements) go INT8.
            mode="linear_symmetric",
            dtype="int8",
            granularity="per_channel",
            weight_threshold=128,
        )
    )
    q_path = pkgdir / f"llama_{target}_{precision}_int8.mlpackage"
    cto.linear_quantize_weights(mlmodel, config).save(str(q_path))

    prog = MilProgram.load(q_path)
    dense = _dequantized_weights(q_path)
    assert prog.op_histogram()[constexpr] == len(dense) == sum(p.ndim == 2 for p in llama.parameters())
    out = run(prog, ids=token_ids).astype(np.float32)
    ref = torch_logits(_with_weights(llama, dense), token_ids)
    assert (out.argmax(-1) == ref.argmax(-1)).all()  # top-1 agreement 100%
    err = np.abs(out - ref).max()
    assert err < (1e-4 if precision == "FLOAT32" else 5e-3 * np.abs(ref).max()), err
    # The INT8 weights are really in use: the float model is 10x (fp16) to 1e4x (fp32) further away.
    assert np.abs(out - torch_logits(llama, token_ids)).max() > 5 * err


_COMPRESSIONS = {
    # name: (target, compression function, op config); all leave the 64-element tables alone
    "lut4_ios16": ("iOS16", "palettize_weights", dict(mode="uniform", nbits=4)),
    "lut4_grouped_ios18": (
        "iOS18",
        "palettize_weights",
        dict(mode="uniform", nbits=4, granularity="per_grouped_channel", group_size=8),
    ),
    "int4_block_ios18": (
        "iOS18",
        "linear_quantize_weights",
        dict(mode="linear", dtype="int4", granularity="per_block", block_size=8),
    ),
    "sparse_ios16": ("iOS16", "prune_weights", dict(target_sparsity=0.5)),
    "sparse_ios18": ("iOS18", "prune_weights", dict(target_sparsity=0.5)),
}


# The iOS16 ops decode as their iOS18 forms do (proven by the *_ios18 cases): second proofs, make test-slow.
_OLDER = {"lut4_ios16", "sparse_ios16"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=[pytest.mark.extra] if k in _OLDER else []) for k in sorted(_COMPRESSIONS)]
)
def test_compressed_weights_decode_like_coremltools(
    pkgdir: Path, llama: nn.Module, llama_mlmodel: Any, token_ids: np.ndarray, kind: str
) -> None:
    """LUT palettes, INT4 blocks and sparse masks: our dense weights equal coremltools' decoder's."""
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    target, fn, options = _COMPRESSIONS[kind]
    config_cls = {
        "palettize_weights": cto.OpPalettizerConfig,
        "linear_quantize_weights": cto.OpLinearQuantizerConfig,
        "prune_weights": cto.OpMagnitudePrunerConfig,
    }[fn]
    path = pkgdir / f"llama_{kind}.mlpackage"
    config = cto.OptimizationConfig(global_config=config_cls(weight_threshold=128, **options))
    getattr(cto, fn)(llama_mlmodel(target), config).save(str(path))

    prog = MilProgram.load(path)
    ours = prog.weights()
    spec = ct.utils.load_spec(str(path))
    theirs = milproto_load(spec, spec.specificationVersion, str(path / "Data/com.apple.CoreML/weights"))
    checked = 0
    for op in theirs.functions["main"].operations:
        if op.op_type.startswith("constexpr_") and op.outputs[0].name in ours:
            ref = op.materialized_val_inference()
            assert np.array_equal(ours[op.outputs[0].name], ref), op.outputs[0].name
            checked += 1
    assert checked == sum(p.ndim == 2 for p in llama.parameters())
    out = run(prog, ids=token_ids)
    assert np.isfinite(out).all() and out.shape == (1, 8, VOCAB)


def test_vector_lut_decompression_matches_coremltools() -> None:
    """iOS18 block-wise / vector LUTs (vector palettization needs scikit-learn to produce, so the
    decoder is checked against coremltools' reference decoder directly)."""
    from coremltools.optimize import _utils as cto_utils

    from kimi_student.export.mil.ops.constexpr import _lut_dense

    rng = np.random.default_rng(4)
    for indices_shape, lut_shape, axis in [
        ((4, 6), (2, 1, 4, 1), None),
        ((4, 6), (1, 3, 4, 2), 0),
        ((2, 4, 6), (1, 2, 1, 16, 3), -1),
    ]:
        idx = rng.integers(0, lut_shape[-2], indices_shape).astype(np.uint8)
        lut = rng.standard_normal(lut_shape).astype(np.float32)
        theirs = cto_utils.lut_to_dense(idx, lut, axis)
        assert np.array_equal(_lut_dense(idx, lut, axis), theirs)
