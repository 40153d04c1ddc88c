"""The numpy ML-program executor against torch, on real coremltools conversions (no mocks).

Every model here is converted by coremltools 9 (torch.export after run_decompositions({}), or
torch.jit.trace), saved as an .mlpackage, reloaded by MilProgram and compared with torch.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = [  # converter chatter (deprecations, trace warnings, renamed outputs), not findings
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]

ct = pytest.importorskip("coremltools")
cto = pytest.importorskip("coremltools.optimize.coreml")

from kimi_student.errors import KimiStudentError  # noqa: E402
from kimi_student.export.mil_exec import (  # noqa: E402
    SUPPORTED_OPS,
    CorruptPackageError,
    MilExecError,
    MilProgram,
    UnsupportedOpError,
    predict_with_coreml,
    read_blob,
)

VOCAB, DIM, HEADS, KV_HEADS, HIDDEN, MAXLEN = 64, 32, 4, 2, 64, 16


# --------------------------------------------------------------------------------------------------
# Small torch models
# --------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_tables(head_dim: int, maxlen: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(torch.arange(maxlen).float(), inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class Attention(nn.Module):
    """GQA attention: fewer KV heads than query heads, repeated before the scores."""

    def __init__(self) -> None:
        super().__init__()
        self.hd = DIM // HEADS
        self.q = nn.Linear(DIM, HEADS * self.hd, bias=False)
        self.k = nn.Linear(DIM, KV_HEADS * self.hd, bias=False)
        self.v = nn.Linear(DIM, KV_HEADS * self.hd, bias=False)
        self.o = nn.Linear(HEADS * self.hd, DIM, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        b, s, _ = x.shape
        q = self.q(x).view(b, s, HEADS, self.hd).transpose(1, 2)
        k = self.k(x).view(b, s, KV_HEADS, self.hd).transpose(1, 2)
        v = self.v(x).view(b, s, KV_HEADS, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)
        v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
        att = F.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.hd) + mask, dim=-1)
        return self.o((att @ v).transpose(1, 2).reshape(b, s, -1))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(DIM, HIDDEN, bias=False)
        self.up = nn.Linear(DIM, HIDDEN, bias=False)
        self.down = nn.Linear(HIDDEN, DIM, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.n1, self.attn, self.n2, self.mlp = RMSNorm(DIM), Attention(), RMSNorm(DIM), MLP()

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.attn(self.n1(x), cos, sin, mask)
        return x + self.mlp(self.n2(x))


class TinyLlama(nn.Module):
    """Two Llama blocks: RMSNorm, RoPE from precomputed tables, causal mask, GQA, SiLU MLP, tied head."""

    def __init__(self, maxlen: int = MAXLEN, layers: int = 2):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.blocks = nn.ModuleList([Block() for _ in range(layers)])
        self.norm = RMSNorm(DIM)
        self.lm_head = nn.Linear(DIM, VOCAB, bias=False)
        self.lm_head.weight = self.emb.weight  # tied
        cos, sin = rope_tables(DIM // HEADS, maxlen)
        self.register_buffer("cos_t", cos, persistent=False)
        self.register_buffer("sin_t", sin, persistent=False)
        self.register_buffer(
            "mask_t", torch.triu(torch.full((maxlen, maxlen), -1e4), diagonal=1), persistent=False
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        s = ids.shape[1]
        if s == self.cos_t.shape[0]:
            # Full length: no slicing by a traced size (jit.trace + coremltools fail on aten::Int).
            cos, sin, mask = self.cos_t, self.sin_t, self.mask_t
        else:
            cos, sin, mask = self.cos_t[:s], self.sin_t[:s], self.mask_t[:s, :s]
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


class KVCacheLlama(nn.Module):
    """One Llama block whose KV cache lives in buffers updated in place (Core ML states).

    `mask` is (1, 1, S, end): its last dimension says how many positions are filled after this
    call, as in Apple's stateful Llama example, so no position tensor is needed."""

    def __init__(self, sdpa: bool = False):
        super().__init__()
        self.sdpa, self.hd = sdpa, DIM // HEADS
        self.emb = nn.Embedding(VOCAB, DIM)
        self.n1, self.n2, self.norm, self.mlp = RMSNorm(DIM), RMSNorm(DIM), RMSNorm(DIM), MLP()
        self.q = nn.Linear(DIM, DIM, bias=False)
        self.k = nn.Linear(DIM, KV_HEADS * self.hd, bias=False)
        self.v = nn.Linear(DIM, KV_HEADS * self.hd, bias=False)
        self.o = nn.Linear(DIM, DIM, bias=False)
        self.lm_head = nn.Linear(DIM, VOCAB, bias=False)
        self.lm_head.weight = self.emb.weight
        cos, sin = rope_tables(self.hd, MAXLEN)
        self.register_buffer("cos_t", cos, persistent=False)
        self.register_buffer("sin_t", sin, persistent=False)
        self.register_buffer("k_cache", torch.zeros(1, KV_HEADS, MAXLEN, self.hd))
        self.register_buffer("v_cache", torch.zeros(1, KV_HEADS, MAXLEN, self.hd))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s, end = ids.shape[1], mask.shape[-1]
        start = end - s
        x = self.emb(ids)
        h = self.n1(x)
        q = self.q(h).view(1, s, HEADS, self.hd).transpose(1, 2)
        k = self.k(h).view(1, s, KV_HEADS, self.hd).transpose(1, 2)
        v = self.v(h).view(1, s, KV_HEADS, self.hd).transpose(1, 2)
        cos, sin = self.cos_t[start:end], self.sin_t[start:end]
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        self.k_cache[:, :, start:end] = k
        self.v_cache[:, :, start:end] = v
        keys = self.k_cache[:, :, :end].repeat_interleave(HEADS // KV_HEADS, dim=1)
        values = self.v_cache[:, :, :end].repeat_interleave(HEADS // KV_HEADS, dim=1)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        else:
            y = F.softmax(q @ keys.transpose(-1, -2) / math.sqrt(self.hd) + mask, dim=-1) @ values
        x = x + self.o(y.transpose(1, 2).reshape(1, s, -1))
        x = x + self.mlp(self.n2(x))
        return self.lm_head(self.norm(x))


class AneBlock(nn.Module):
    """Apple ml-ane-transformers style: (B, C, 1, S) activations, 1x1 convs, channel layer norm,
    per-head einsum attention."""

    def __init__(self) -> None:
        super().__init__()
        self.hd = DIM // HEADS
        self.qkv = nn.Conv2d(DIM, 3 * DIM, 1)
        self.out = nn.Conv2d(DIM, DIM, 1)
        self.fc1 = nn.Conv2d(DIM, HIDDEN, 1)
        self.fc2 = nn.Conv2d(HIDDEN, DIM, 1, groups=2)
        self.ln_w = nn.Parameter(1.0 + 0.1 * torch.randn(DIM))
        self.ln_b = nn.Parameter(0.1 * torch.randn(DIM))

    def ln(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        zc = x - mu
        y = zc * torch.rsqrt(zc.pow(2).mean(1, keepdim=True) + 1e-5)
        return y * self.ln_w.view(1, -1, 1, 1) + self.ln_b.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.ln(x)).split(DIM, dim=1)
        heads = []
        for qh, kh, vh in zip(q.split(self.hd, 1), k.split(self.hd, 1), v.split(self.hd, 1)):
            w = torch.einsum("bchq,bchk->bkhq", qh, kh) * (self.hd**-0.5) + mask
            heads.append(torch.einsum("bkhq,bchk->bchq", w.softmax(dim=1), vh))
        x = x + self.out(torch.cat(heads, dim=1))
        # Exact GELU: via torch.export coremltools 9 drops approximate="tanh" (keyword argument)
        # and emits mode EXACT, so a tanh GELU here would test the converter, not the executor.
        return x + self.fc2(F.gelu(self.fc1(self.ln(x))))


class OpZoo(nn.Module):
    """Ops a student or its export glue may use beyond the plain decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(DIM, DIM)
        self.ln = nn.LayerNorm(DIM)
        self.conv = nn.Conv1d(4, 6, 3, padding=1, stride=2)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.ln(self.lin(x))  # (1, 8, 32)
        a = F.gelu(h) + torch.tanh(h) * torch.sigmoid(h) - torch.exp(-h.abs())
        b = torch.log(h.abs() + 1.0) + torch.sqrt(h.abs()) + torch.clamp(h, -0.5, 0.5) + F.relu(h) + F.elu(h)
        c = torch.where(h > 0, h, -h) * (h < 0.3).float() + torch.sin(h) * torch.cos(h) + F.leaky_relu(h, 0.1)
        d = torch.maximum(h, torch.zeros_like(h)) - torch.minimum(h, torch.ones_like(h)) + h.pow(3) / 7.0
        e = F.softmax(a, dim=-1) + F.log_softmax(b, dim=-1).exp() + torch.cumsum(c, dim=1) / 8.0
        vals, idx = torch.topk(e, 3, dim=-1)
        s = torch.sort(d, dim=-1, descending=True).values
        red = h.sum(-1) + h.amax(-1) - h.amin(-1) + h.norm(dim=-1) + h.mean(-1)
        g = torch.gather(h, 2, ids.unsqueeze(0).expand(1, 8, 4).long())
        conv = self.conv(h[:, :4, :])
        flip = torch.flip(h, dims=[1]).permute(0, 2, 1).reshape(1, -1)[:, ::3]
        pad = F.pad(h, (1, 2), value=0.5)
        return vals, idx.to(torch.int32), s, red, g, conv, flip, pad, e


class Upsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest") + 1.0


# --------------------------------------------------------------------------------------------------
# Conversion helpers
# --------------------------------------------------------------------------------------------------


def convert(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    inputs: list[Any],
    *,
    precision: Any = None,
    target: Any = None,
    via: str = "export",
    dynamic_shapes: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """torch -> Core ML ML program -> saved .mlpackage; returns the MLModel."""
    module = module.eval()
    if via == "export":
        src = torch.export.export(module, args, dynamic_shapes=dynamic_shapes).run_decompositions({})
    else:
        src = torch.jit.trace(module, args)
    mlmodel = ct.convert(
        src,
        inputs=inputs,
        convert_to="mlprogram",
        compute_precision=precision or ct.precision.FLOAT32,
        minimum_deployment_target=target or ct.target.iOS17,
        **kwargs,
    )
    mlmodel.save(str(path))
    return mlmodel


def seeded(cls: type[nn.Module], *args: Any, seed: int = 0, **kwargs: Any) -> nn.Module:
    torch.manual_seed(seed)
    module = cls(*args, **kwargs).eval()
    with torch.no_grad():  # spread the tied embedding so logits have clear top-1 margins
        for name, p in module.named_parameters():
            if name.startswith("emb"):
                p.mul_(2.0)
    return module


def ids_input(length: Any = 8) -> Any:
    return ct.TensorType(name="ids", shape=(1, length), dtype=np.int32)


def run(prog: MilProgram, **inputs: np.ndarray) -> np.ndarray:
    out = prog.predict(inputs)
    assert len(out) == 1
    return next(iter(out.values()))


@pytest.fixture(scope="module")
def pkgdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlpackages")


@pytest.fixture(scope="module")
def llama() -> nn.Module:
    return seeded(TinyLlama, maxlen=8)


@pytest.fixture(scope="module")
def token_ids() -> np.ndarray:
    return np.random.default_rng(0).integers(0, VOCAB, size=(1, 8)).astype(np.int32)


@pytest.fixture(scope="module")
def fp32_pkg(pkgdir: Path, llama: nn.Module, token_ids: np.ndarray) -> Path:
    path = pkgdir / "llama_fp32.mlpackage"
    convert(llama, (torch.from_numpy(token_ids),), path, [ids_input()])
    return path


@pytest.fixture(scope="module")
def fp16_pkg(pkgdir: Path, llama: nn.Module, token_ids: np.ndarray) -> Path:
    path = pkgdir / "llama_fp16.mlpackage"
    convert(
        llama,
        (torch.from_numpy(token_ids),),
        path,
        [ids_input()],
        precision=ct.precision.FLOAT16,
        target=ct.target.iOS18,
    )
    return path


@pytest.fixture(scope="module")
def llama_mlmodel(pkgdir: Path, llama: nn.Module, token_ids: np.ndarray) -> Any:
    """Converted float MLModels of `llama` by (target, precision), converted once per module."""
    cache: dict[tuple[str, str], Any] = {}

    def get(target: str, precision: str = "FLOAT32") -> Any:
        if (target, precision) not in cache:
            cache[target, precision] = convert(
                llama,
                (torch.from_numpy(token_ids),),
                pkgdir / f"llama_{target}_{precision}.mlpackage",
                [ids_input()],
                precision=getattr(ct.precision, precision),
                target=getattr(ct.target, target),
            )
        return cache[target, precision]

    return get


def torch_logits(module: nn.Module, *args: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(*(torch.from_numpy(a) for a in args)).numpy()


# --------------------------------------------------------------------------------------------------
# fp32 / fp16 decoders
# --------------------------------------------------------------------------------------------------


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


def test_dynamic_sequence_length(pkgdir: Path) -> None:
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
    ct.utils.save_multifunction(desc, str(path))
    for function, ids in (("full", token_ids), ("short", token_ids[:, :4]), (None, token_ids[:, :4])):
        out = run(MilProgram.load(path, function=function), ids=ids)
        assert np.abs(out - torch_logits(llama, ids)).max() < 1e-4
    with pytest.raises(CorruptPackageError, match="no function 'prefill'"):
        MilProgram.load(path, function="prefill")


# --------------------------------------------------------------------------------------------------
# INT8 weights
# --------------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("target", "precision", "constexpr"),
    [
        ("iOS17", "FLOAT32", "constexpr_affine_dequantize"),
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


@pytest.mark.parametrize("kind", sorted(_COMPRESSIONS))
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


# --------------------------------------------------------------------------------------------------
# Stateful KV cache
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("via", "sdpa"), [("export", False), ("trace", True)])
def test_stateful_kv_cache_step_by_step(pkgdir: Path, via: str, sdpa: bool) -> None:
    module = seeded(KVCacheLlama, sdpa=sdpa)
    path = pkgdir / f"kv_{via}_{sdpa}.mlpackage"
    seq, end = ct.RangeDim(1, MAXLEN, default=1), ct.RangeDim(1, MAXLEN, default=1)
    dyn = None
    if via == "export":
        s, e = torch.export.Dim("s", min=1, max=MAXLEN - 1), torch.export.Dim("e", min=1, max=MAXLEN - 1)
        dyn = {"ids": {1: s}, "mask": {2: s, 3: e}}
    state_shape = (1, KV_HEADS, MAXLEN, DIM // HEADS)
    convert(
        module,
        (torch.zeros(1, 3, dtype=torch.int32), torch.zeros(1, 1, 3, 5)),
        path,
        [
            ct.TensorType(name="ids", shape=(1, seq), dtype=np.int32),
            ct.TensorType(name="mask", shape=(1, 1, seq, end), dtype=np.float16),
        ],
        precision=ct.precision.FLOAT16,
        target=ct.target.iOS18,
        via=via,
        dynamic_shapes=dyn,
        outputs=[ct.TensorType(name="logits", dtype=np.float16)],
        states=[
            ct.StateType(wrapped_type=ct.TensorType(shape=state_shape), name="k_cache"),
            ct.StateType(wrapped_type=ct.TensorType(shape=state_shape), name="v_cache"),
        ],
    )
    module.k_cache.zero_()
    module.v_cache.zero_()
    prog = MilProgram.load(path)
    hist = prog.op_histogram()
    assert prog.state_names == ["k_cache", "v_cache"] and prog.output_names == ["logits"]
    assert {"read_state", "write_state", "slice_update"} <= set(hist)
    assert ("scaled_dot_product_attention" in hist) == sdpa
    state = prog.new_state()
    assert state["k_cache"].dtype == np.float16 and state["k_cache"].shape == state_shape

    rng = np.random.default_rng(1)
    prompt = rng.integers(0, VOCAB, (1, 4)).astype(np.int32)
    steps = [prompt] + [rng.integers(0, VOCAB, (1, 1)).astype(np.int32) for _ in range(5)]
    pos = 0
    for ids in steps:
        n = ids.shape[1]
        mask = np.zeros((1, 1, n, pos + n), np.float32)
        mask[0, 0] = np.triu(np.full((n, pos + n), -1e4, np.float32), k=pos + 1)
        ref = torch_logits(module, ids, mask)
        out = prog.predict({"ids": ids, "mask": mask.astype(np.float16)}, state)["logits"]
        assert out.shape == ref.shape
        assert np.abs(out.astype(np.float32) - ref).max() < 5e-3 * np.abs(ref).max()  # ~5e-4 measured
        assert (out.argmax(-1) == ref.argmax(-1)).all()
        pos += n
    # The caches were updated in place, position by position, like torch's buffers.
    for name in ("k_cache", "v_cache"):
        ours, theirs = state[name].astype(np.float32), getattr(module, name).detach().numpy()
        assert np.abs(ours[:, :, :pos] - theirs[:, :, :pos]).max() < 5e-3 * np.abs(theirs).max()
        assert not ours[:, :, pos:].any()

    # Without a state the call starts from zeros (and keeps nothing): the prompt step again.
    first = {"ids": prompt, "mask": np.triu(np.full((4, 4), -1e4, np.float16), k=1)[None, None]}
    again = prog.predict(first)["logits"]
    assert np.array_equal(again, prog.predict(first, prog.new_state())["logits"])
    with pytest.raises(MilExecError, match="state 'k_cache'"):
        prog.predict(first, {**state, "k_cache": state["k_cache"].astype(np.float32)})


# --------------------------------------------------------------------------------------------------
# Other layouts and ops
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Op by op against coremltools' own value inference
# --------------------------------------------------------------------------------------------------


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


def test_vector_lut_decompression_matches_coremltools() -> None:
    """iOS18 block-wise / vector LUTs (vector palettization needs scikit-learn to produce, so the
    decoder is checked against coremltools' reference decoder directly)."""
    from coremltools.optimize import _utils as cto_utils

    from kimi_student.export.mil_exec import _lut_dense

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


# --------------------------------------------------------------------------------------------------
# Errors, weight file, speed
# --------------------------------------------------------------------------------------------------


def test_unsupported_op_is_named(pkgdir: Path) -> None:
    path = pkgdir / "upsample.mlpackage"
    convert(Upsample(), (torch.zeros(1, 2, 3, 3),), path, [ct.TensorType(name="x", shape=(1, 2, 3, 3))])
    with pytest.raises(UnsupportedOpError) as info:
        MilProgram.load(path)
    (op_type,) = info.value.op_types
    assert op_type not in SUPPORTED_OPS and "upsample" in op_type
    assert op_type in str(info.value) and isinstance(info.value, KimiStudentError)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_corrupt_packages_name_the_file(fp16_pkg: Path, tmp_path: Path) -> None:
    spec = Path("Data/com.apple.CoreML/model.mlmodel")
    weights = Path("Data/com.apple.CoreML/weights/weight.bin")

    pkg = _copy(fp16_pkg, tmp_path / "no_spec.mlpackage")
    (pkg / spec).unlink()
    with pytest.raises(CorruptPackageError, match=r"model\.mlmodel: model specification is missing"):
        MilProgram.load(pkg)

    for i, cut in enumerate((0.5, 0.9)):
        pkg = _copy(fp16_pkg, tmp_path / f"cut_spec{i}.mlpackage")
        data = (pkg / spec).read_bytes()
        (pkg / spec).write_bytes(data[: int(len(data) * cut)])
        with pytest.raises(CorruptPackageError, match=r"model\.mlmodel") as info:
            MilProgram.load(pkg)
        assert info.value.path == pkg / spec

    pkg = _copy(fp16_pkg, tmp_path / "garbage_spec.mlpackage")
    (pkg / spec).write_bytes(b"\xff" * 100)
    with pytest.raises(CorruptPackageError, match=r"model\.mlmodel"):
        MilProgram.load(pkg)

    pkg = _copy(fp16_pkg, tmp_path / "no_weights.mlpackage")
    (pkg / weights).unlink()
    with pytest.raises(CorruptPackageError, match=r"weight\.bin: weight file is missing"):
        MilProgram.load(pkg)

    pkg = _copy(fp16_pkg, tmp_path / "cut_weights.mlpackage")
    data = (pkg / weights).read_bytes()
    (pkg / weights).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptPackageError, match=r"weight\.bin: blob at offset \d+: .*truncated") as info:
        MilProgram.load(pkg)
    assert info.value.path == pkg / weights

    pkg = _copy(fp16_pkg, tmp_path / "bad_sentinel.mlpackage")
    data = bytearray((pkg / weights).read_bytes())
    data[64:68] = b"\0\0\0\0"  # the first blob's metadata record
    (pkg / weights).write_bytes(bytes(data))
    with pytest.raises(CorruptPackageError, match=r"weight\.bin: blob at offset 64: bad sentinel"):
        MilProgram.load(pkg)

    pkg = _copy(fp16_pkg, tmp_path / "no_manifest.mlpackage")
    (pkg / "Manifest.json").unlink()
    with pytest.raises(CorruptPackageError, match=r"Manifest\.json"):
        MilProgram.load(pkg)


def test_blob_reader_agrees_with_coremltools(fp16_pkg: Path, pkgdir: Path) -> None:
    storage = pytest.importorskip("coremltools.libmilstoragepython")
    from coremltools.proto import MIL_pb2

    spec = ct.utils.load_spec(str(fp16_pkg))
    weights = fp16_pkg / "Data/com.apple.CoreML/weights/weight.bin"
    reader = storage._BlobStorageReader(str(weights))
    seen = 0
    for op in spec.mlProgram.functions["main"].block_specializations["CoreML8"].operations:
        val = op.attributes["val"] if op.type == "const" else None
        if val is None or val.WhichOneof("value") != "blobFileValue":
            continue
        tt = val.type.tensorType
        shape = [d.constant.size for d in tt.dimensions]
        assert tt.dataType == MIL_pb2.FLOAT16
        ours = read_blob(weights, val.blobFileValue.offset, "fp16", shape)
        theirs = np.frombuffer(reader.read_fp16_data(val.blobFileValue.offset).tobytes(), np.float16)
        assert ours.dtype == np.float16 and np.array_equal(ours.reshape(-1), theirs)
        seen += 1
    assert seen >= 10


def test_blob_reader_reads_every_dtype_coremltools_writes(tmp_path: Path) -> None:
    """Header, metadata records, padding bits and LSB-first sub-byte packing, via the C++ writer."""
    storage = pytest.importorskip("coremltools.libmilstoragepython")
    rng = np.random.default_rng(5)
    path = tmp_path / "weight.bin"
    writer = storage._BlobStorageWriter(str(path))
    written = []
    for dtype, np_dtype, lo, hi in [
        ("int8", np.int8, -128, 128),
        ("uint8", np.uint8, 0, 256),
        ("int16", np.int16, -(2**15), 2**15),
        ("uint16", np.uint16, 0, 2**16),
        ("int32", np.int32, -(2**31), 2**31),
        ("uint32", np.uint32, 0, 2**32),
        ("int4", np.int8, -8, 8),
        ("uint4", np.uint8, 0, 16),
        ("uint6", np.uint8, 0, 64),
        ("uint3", np.uint8, 0, 8),
        ("uint2", np.uint8, 0, 4),
        ("uint1", np.uint8, 0, 2),
    ]:
        values = rng.integers(lo, hi, size=(3, 7)).astype(np_dtype)  # 21 values: sub-byte padding
        written.append((dtype, values, getattr(writer, f"write_{dtype}_data")(values.reshape(-1))))
    floats = rng.standard_normal((5, 3)).astype(np.float32)
    written.append(("fp32", floats, writer.write_float_data(floats.reshape(-1))))
    halves = floats.astype(np.float16)
    written.append(("fp16", halves, writer.write_fp16_data(halves.reshape(-1).view(np.uint16))))
    del writer  # flushes the file
    for dtype, values, offset in written:
        got = read_blob(path, offset, dtype, values.shape)
        assert got.dtype == values.dtype and np.array_equal(got, values), dtype
    with pytest.raises(CorruptPackageError, match="holds int8 data but the program declares fp16"):
        read_blob(path, written[0][2], "fp16", (3, 7))


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
