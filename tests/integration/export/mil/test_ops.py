"""The op table: one MIL expression per op (and its less common parameters) against coremltools'
own value inference or a hand-computed reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ct = pytest.importorskip("coremltools")

from kimi_student.export.mil import MilProgram  # noqa: E402
from tests.integration.export.mil.conversion import CONVERTER_CHATTER  # noqa: E402

pytestmark = [*CONVERTER_CHATTER, pytest.mark.slow]


def _mil_cases() -> dict[str, Any]:
    """name -> builder(x, i) of one MIL expression, x: fp32 (2, 3, 4), i: int32 (2, 3) in [0, 4).

    Covers ops torch conversions of small models rarely emit, with their less common parameters."""
    from coremltools.converters.mil import Builder as mb

    def x4(x: Any) -> Any:
        return mb.reshape(x=x, shape=[1, 2, 3, 4])

    f32 = np.float32
    ch2 = np.array([1.5, 0.5], f32)
    cases: dict[str, Any] = {
        "band_part": lambda x, i: mb.band_part(x=x, lower=1, upper=0),
        "range_1d": lambda x, i: mb.range_1d(
            start=np.int32(1), end=mb.gather(x=mb.shape(x=x), indices=2, axis=0), step=np.int32(1)
        ),
        "fill": lambda x, i: mb.fill(shape=mb.shape(x=i), value=2.5),
        "slice_by_size": lambda x, i: mb.slice_by_size(x=x, begin=[0, 1, 1], size=[-1, 2, 2]),
        "slice_by_index": lambda x, i: mb.slice_by_index(
            x=x, begin=[1, 0, 3], end=[2, 3, 0], stride=[1, 2, -1], squeeze_mask=[True, False, False]
        ),
        "slice_by_index_masks": lambda x, i: mb.slice_by_index(
            x=x,
            begin=[0, 5, -3],
            end=[1, 1, -1],
            begin_mask=[False, True, False],
            end_mask=[True, False, False],
        ),
        "gather_nd": lambda x, i: mb.gather_nd(x=x, indices=np.array([[0, 1], [1, 2]], np.int32)),
        "gather_neg": lambda x, i: mb.gather(x=x, indices=np.array([[-1, 0]], np.int32), axis=-1),
        "gather_batch": lambda x, i: mb.gather(x=x, indices=i, axis=2, batch_dims=2),
        "gather_along_axis": lambda x, i: mb.gather_along_axis(
            x=x, indices=mb.expand_dims(x=i, axes=[-1]), axis=2
        ),
        "scatter_add": lambda x, i: mb.scatter(
            data=x, indices=np.array([1, 0], np.int32), updates=np.ones((2, 2, 4), f32), axis=1, mode="add"
        ),
        "scatter_along_axis": lambda x, i: mb.scatter_along_axis(
            data=x,
            indices=mb.expand_dims(x=i, axes=[-1]),
            updates=np.full((2, 3, 1), 7.0, f32),
            axis=2,
            mode="update",
        ),
        "scatter_nd": lambda x, i: mb.scatter_nd(
            data=x,
            indices=np.array([[0, 1], [1, 2]], np.int32),
            updates=np.full((2, 4), 0.5, f32),
            mode="max",
        ),
        "one_hot": lambda x, i: mb.one_hot(
            indices=i, one_hot_vector_size=5, axis=0, on_value=3.0, off_value=-1.0
        ),
        "cumsum": lambda x, i: mb.cumsum(x=x, axis=1, reverse=True),
        "cumsum_exclusive": lambda x, i: mb.cumsum(x=x, axis=1, exclusive=True),
        "argsort": lambda x, i: mb.argsort(x=x, axis=-1, ascending=True),
        "topk_values": lambda x, i: mb.topk(x=x, k=2, axis=1)[0],
        "topk_indices": lambda x, i: mb.topk(x=x, k=2, axis=1)[1],
        "reduce_log_sum": lambda x, i: mb.reduce_log_sum(x=mb.abs(x=x), axes=[1]),
        "reduce_argmax": lambda x, i: mb.reduce_argmax(x=x, axis=1, keep_dims=True),
        "reduce_argmin": lambda x, i: mb.reduce_argmin(x=x, axis=-1),
        "l2_norm": lambda x, i: mb.l2_norm(x=x4(x)),
        "instance_norm": lambda x, i: mb.instance_norm(x=x4(x), gamma=ch2, beta=np.array([0.1, -0.2], f32)),
        "layer_norm": lambda x, i: mb.layer_norm(
            x=x, axes=[-1], gamma=np.arange(4, dtype=f32), beta=np.ones(4, f32), epsilon=1e-3
        ),
        "batch_norm": lambda x, i: mb.batch_norm(
            x=x4(x), mean=np.array([0.1, 0.2], f32), variance=np.array([2.0, 0.5], f32), gamma=ch2, beta=-ch2
        ),
        "elu": lambda x, i: mb.elu(x=x, alpha=0.7),
        "leaky_relu": lambda x, i: mb.leaky_relu(x=x, alpha=0.2),
        "sigmoid_hard": lambda x, i: mb.sigmoid_hard(x=x, alpha=0.3, beta=0.4),
        "linear_activation": lambda x, i: mb.linear_activation(x=x, alpha=2.0, beta=-1.0),
        "scaled_tanh": lambda x, i: mb.scaled_tanh(x=x, alpha=2.0, beta=0.5),
        "clamped_relu": lambda x, i: mb.clamped_relu(x=x, alpha=0.1, beta=0.8),
        "thresholded_relu": lambda x, i: mb.thresholded_relu(x=x, alpha=0.3),
        "prelu": lambda x, i: mb.prelu(x=x4(x), alpha=np.array([0.1, 0.5], f32)),
        "softplus_parametric": lambda x, i: mb.softplus_parametric(
            x=x4(x), alpha=np.array([0.1, 0.5], f32), beta=ch2
        ),
        "threshold": lambda x, i: mb.threshold(x=x, alpha=0.1),
        "inverse": lambda x, i: mb.inverse(x=x, epsilon=0.5),
        "log": lambda x, i: mb.log(x=mb.abs(x=x), epsilon=0.1),
        "rsqrt": lambda x, i: mb.rsqrt(x=mb.abs(x=x), epsilon=0.1),
        "gelu_tanh": lambda x, i: mb.gelu(x=x, mode="TANH_APPROXIMATION"),
        "gelu_sigmoid": lambda x, i: mb.gelu(x=x, mode="SIGMOID_APPROXIMATION"),
        "gelu_exact": lambda x, i: mb.gelu(x=x, mode="EXACT"),
        "logical": lambda x, i: mb.logical_xor(
            x=mb.logical_and(x=mb.greater(x=x, y=0.0), y=mb.less_equal(x=x, y=1.0)),
            y=mb.logical_or(x=mb.not_equal(x=x, y=0.5), y=mb.logical_not(x=mb.equal(x=x, y=0.0))),
        ),
        "mod": lambda x, i: mb.mod(x=x, y=0.7),
        "floor_div": lambda x, i: mb.floor_div(x=x, y=0.7),
        "int_ops": lambda x, i: mb.add(x=mb.floor_div(x=i, y=2), y=mb.mod(x=mb.sub(x=i, y=5), y=3)),
        "int_real_div": lambda x, i: mb.real_div(x=mb.add(x=i, y=4), y=2),
        "pow": lambda x, i: mb.pow(x=mb.abs(x=x), y=1.7),
        "reverse": lambda x, i: mb.reverse(x=x, axes=[0, 2]),
        "stack": lambda x, i: mb.stack(values=[x, x], axis=1),
        "concat_interleave": lambda x, i: mb.concat(values=[x, mb.mul(x=x, y=2.0)], axis=1, interleave=True),
        "split_sizes": lambda x, i: mb.split(x=x, split_sizes=[1, 3], axis=2)[1],
        "tile": lambda x, i: mb.tile(x=x, reps=[1, 2, 1]),
        "pad_reflect": lambda x, i: mb.pad(x=x, pad=[1, 1, 2, 1], mode="reflect"),
        "pad_replicate": lambda x, i: mb.pad(x=x, pad=[0, 2], mode="replicate"),
        "pad_constant": lambda x, i: mb.pad(x=x, pad=[1, 0, 0, 0, 0, 2], mode="constant", constant_val=9.0),
        "sliding_windows": lambda x, i: mb.sliding_windows(x=x, axis=2, size=2, stride=2),
        "flatten2d": lambda x, i: mb.flatten2d(x=x, axis=2),
        "reshape_zero": lambda x, i: mb.reshape(x=x, shape=[0, -1, 2]),
        "expand_squeeze": lambda x, i: mb.squeeze(x=mb.expand_dims(x=x, axes=[0, -1]), axes=[-1]),
        "transpose": lambda x, i: mb.transpose(x=x, perm=[2, 0, 1]),
        "select": lambda x, i: mb.select(cond=mb.greater(x=x, y=0.0), a=x, b=mb.mul(x=x, y=-3.0)),
        "clip": lambda x, i: mb.clip(x=x, alpha=-0.5, beta=0.5),
        "cast_int16": lambda x, i: mb.cast(x=mb.mul(x=x, y=1000.0), dtype="int16"),
        "cast_fp16": lambda x, i: mb.cast(x=mb.cast(x=x, dtype="fp16"), dtype="fp32"),
        "cast_bool": lambda x, i: mb.cast(x=x, dtype="bool"),
        "einsum": lambda x, i: mb.einsum(
            values=(x4(x), mb.transpose(x=x4(x), perm=[0, 3, 2, 1])), equation="nchw,nwhu->nchu"
        ),
        "matmul_transpose": lambda x, i: mb.matmul(x=x, y=x, transpose_x=True),
        "conv2d_groups_dilation_same": lambda x, i: mb.conv(
            x=x4(x),
            weight=np.linspace(-1, 1, 24, dtype=f32).reshape(4, 1, 3, 2),
            groups=2,
            pad_type="same",
            dilations=[1, 2],
            bias=np.arange(4, dtype=f32),
        ),
        "conv1d_stride_custom_pad": lambda x, i: mb.conv(
            x=x,
            weight=np.linspace(-1, 1, 45, dtype=f32).reshape(5, 3, 3),
            strides=[2],
            pad_type="custom",
            pad=[2, 1],
        ),
        "quantize": lambda x, i: mb.cast(
            x=mb.quantize(input=x, scale=f32(0.05), zero_point=np.int8(3), output_dtype="int8"), dtype="int32"
        ),
        "dequantize": lambda x, i: mb.dequantize(
            input=mb.quantize(input=x, scale=f32(0.05), zero_point=np.int8(3), output_dtype="int8"),
            scale=f32(0.05),
            zero_point=np.int8(3),
        ),
        "sdpa_bool_mask": lambda x, i: mb.scaled_dot_product_attention(
            query=x, key=mb.mul(x=x, y=0.5), value=x, attn_mask=np.tril(np.ones((3, 3), bool))
        ),
        "slice_update": lambda x, i: mb.slice_update(
            x=x, update=np.full((2, 1, 2), 5.0, f32), begin=[0, 1, 0], end=[2, 2, 4], stride=[1, 1, 2]
        ),
        "non_zero": lambda x, i: mb.non_zero(x=mb.greater(x=x, y=1.0)),
    }
    for name in ("reduce_sum", "reduce_prod", "reduce_min", "reduce_max", "reduce_mean", "reduce_l1_norm",
                 "reduce_l2_norm", "reduce_log_sum_exp", "reduce_sum_square"):  # fmt: skip
        cases[name] = lambda x, i, name=name: getattr(mb, name)(
            x=x, axes=[0, -1], keep_dims=name.endswith("sum")
        )
    for name in ("erf", "sign", "round", "floor", "ceil", "exp2", "atan", "tan", "sinh", "cosh", "softplus",
                 "softsign", "relu6", "square", "acos", "asin", "atanh", "sigmoid", "tanh", "relu", "silu"):  # fmt: skip
        cases[name] = lambda x, i, name=name: getattr(mb, name)(x=mb.mul(x=x, y=0.3))
    return cases


def _numpy_refs(x: np.ndarray, i: np.ndarray) -> dict[str, np.ndarray]:
    """Hand-computed expectations where coremltools has no (or a broken) value inference."""
    x4 = torch.from_numpy(x.reshape(1, 2, 3, 4))
    gnd = x[[0, 1], [1, 2]]
    scatter_add = x.copy()
    scatter_add[:, [1, 0]] += 1.0
    scatter_nd = x.copy()
    scatter_nd[[0, 1], [1, 2]] = np.maximum(scatter_nd[[0, 1], [1, 2]], 0.5)
    one_hot = np.where(np.arange(5)[:, None, None] == i[None], 3.0, -1.0)
    excl = np.concatenate([np.zeros_like(x[:, :1]), np.cumsum(x, axis=1)[:, :-1]], axis=1)
    mean, var = x4.mean((2, 3), keepdim=True), x4.var((2, 3), unbiased=False, keepdim=True)
    inorm = (x4 - mean) / torch.sqrt(var + 1e-5) * torch.tensor([1.5, 0.5]).view(1, 2, 1, 1)
    inorm = inorm + torch.tensor([0.1, -0.2]).view(1, 2, 1, 1)
    c = lambda v: torch.tensor(v).view(1, 2, 1, 1)  # noqa: E731
    bnorm = (x4 - c([0.1, 0.2])) / torch.sqrt(c([2.0, 0.5]) + 1e-5) * c([1.5, 0.5]) - c([1.5, 0.5])
    windows = np.stack([x[:, :, 0:2], x[:, :, 2:4]], axis=2)
    w2 = torch.linspace(-1, 1, 24).reshape(4, 1, 3, 2)
    conv2d = F.conv2d(x4, w2, torch.arange(4.0), padding="same", dilation=(1, 2), groups=2)
    w1 = torch.linspace(-1, 1, 45).reshape(5, 3, 3)
    conv1d = F.conv1d(F.pad(torch.from_numpy(x), (2, 1)), w1, stride=2)
    q = np.clip(np.rint(x / np.float32(0.05)) + 3, -128, 127)
    interleaved = np.stack([x, 2 * x], axis=2).reshape(2, 6, 4)  # rows x0, 2*x0, x1, 2*x1, ...
    return {
        "concat_interleave": interleaved,  # coremltools' value inference ignores `interleave`
        "silu": (0.3 * x) / (1.0 + np.exp(-0.3 * x)),
        "gather_nd": gnd,
        "scatter_add": scatter_add,
        "scatter_nd": scatter_nd,
        "one_hot": one_hot,
        "cumsum_exclusive": excl,
        "instance_norm": inorm.numpy(),
        "batch_norm": bnorm.numpy(),
        "sliding_windows": windows,
        "conv2d_groups_dilation_same": conv2d.numpy(),
        "conv1d_stride_custom_pad": conv1d.numpy(),
        "dequantize": (q - 3) * np.float32(0.05),
    }


def _value_inference(build: Any, x: np.ndarray, i: np.ndarray) -> np.ndarray | None:
    """coremltools' own numpy evaluation of one expression on constants (None if it has none)."""
    from coremltools.converters.mil import Builder as mb

    found: list[Any] = []

    @mb.program(input_specs=[], opset_version=ct.target.iOS18)
    def _prog() -> Any:
        try:  # fresh copies: some coremltools value inferences write into their inputs
            found.append(build(mb.const(val=x.copy()), mb.const(val=i.copy())).val)
        except Exception:
            found.append(None)
        return mb.const(val=np.zeros(1, np.float32))

    return None if found[0] is None else np.asarray(found[0])


def test_ops_match_coremltools_value_inference(pkgdir: Path) -> None:
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    i = np.array([[2, 0, 1], [1, 1, 3]], np.int32)
    cases = _mil_cases()

    @mb.program(
        input_specs=[mb.TensorSpec(shape=x.shape), mb.TensorSpec(shape=i.shape, dtype=types.int32)],
        opset_version=ct.target.iOS18,
    )
    def prog(xv: Any, iv: Any) -> Any:
        return tuple(mb.identity(x=build(xv, iv), name=name) for name, build in cases.items())

    path = pkgdir / "mil_ops.mlpackage"
    ct.convert(
        prog,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS18,
        compute_precision=ct.precision.FLOAT32,
    ).save(str(path))
    ours = MilProgram.load(path).predict({"xv": x, "iv": i})
    refs = _numpy_refs(x, i)
    bad = []
    for name, build in cases.items():
        ref = _value_inference(build, x, i) if name not in refs else refs[name]
        out = ours[name]
        if ref is None:
            bad.append(f"{name}: no reference")
        elif out.shape != ref.shape:
            bad.append(f"{name}: shape {out.shape} != {ref.shape}")
        elif ref.dtype.kind in "iub" and not np.array_equal(out, ref):
            bad.append(f"{name}: {out.ravel()[:6]} != {ref.ravel()[:6]}")
        elif not np.allclose(out, ref, rtol=1e-5, atol=2e-6):
            bad.append(f"{name}: max abs diff {np.abs(out - ref).max():.3g}")
    assert not bad, "\n".join(bad)


def test_slice_update_writes_in_place_only_into_a_value_nothing_else_sees(
    pkgdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """slice_update may reuse its input's memory (the decoder's KV cache): only when the input dies
    there and no live value (a later reader, a view) shares it; every other case copies."""
    from coremltools.converters.mil import Builder as mb

    from kimi_student.export.mil.ops import OPS

    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    upd = np.full((2, 1, 4), -1.0, np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS18)
    def prog(xv: Any) -> Any:
        a = mb.mul(x=xv, y=2.0)
        kept = mb.slice_update(x=a, update=upd, begin=[0, 0, 0], end=[2, 1, 4])  # `a` read again below
        reread = mb.add(x=a, y=kept, name="reread")
        d = mb.mul(x=xv, y=3.0)
        e = mb.slice_update(x=d, update=upd, begin=[0, 1, 0], end=[2, 2, 4])  # `d` dies here: in place
        row = mb.slice_by_index(x=e, begin=[0, 1, 0], end=[2, 2, 4])  # a view of `e`, alive after
        f = mb.slice_update(x=e, update=upd * 5, begin=[0, 1, 0], end=[2, 2, 4])
        return reread, mb.add(x=row, y=f, name="viewed")

    path = pkgdir / "slice_update_alias.mlpackage"
    ct.convert(
        prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS18,
        compute_precision=ct.precision.FLOAT32,
    ).save(str(path))  # fmt: skip
    seen: list[bool] = []
    inner = OPS["slice_update"]
    monkeypatch.setitem(OPS, "slice_update", lambda a: (seen.append(a.in_place), inner(a))[1])
    out = MilProgram.load(path).predict({"xv": x})

    a = x * 2
    kept = a.copy()
    kept[:, 0] = -1
    d = x * 3
    e = d.copy()
    e[:, 1] = -1
    row = e[:, 1:2].copy()
    f = e.copy()
    f[:, 1] = -5
    np.testing.assert_array_equal(out["reread"], a + kept)
    np.testing.assert_array_equal(out["viewed"], row + f)
    assert seen == [False, True, False]
