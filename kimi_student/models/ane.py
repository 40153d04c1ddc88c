"""The student as an export module for the Apple Neural Engine, nanoGPT style: one readable file.

It computes exactly what `transformers.LlamaForCausalLM` computes on the same HF checkpoint, but is
written so that `torch.export` and coremltools take it whole (HF's own model does not convert: its mask
code uses `diff`) and so that it runs well in FP16 on the ANE:

- static shapes only: the causal mask and the RoPE cos/sin tables are buffers sized to `max_seq` and
  sliced with sizes known at trace time; nothing depends on the data except the decode position;
- RMSNorm divides by the per-position max |x| before squaring, so fp16 never overflows (x**2 > 65504
  already at |x| > 256) — mathematically it is the same norm;
- queries are scaled before Q·Kᵀ and the mask uses a finite -1e4, both safe in fp16;
- layout "bsc" is the usual (B, S, C) with linear layers; layout "bc1s" is Apple's ml-ane-transformers
  layout (B, C, 1, S) with 1x1 convolutions, where the ANE is fastest, and attention is computed with
  heads as (1, H, hd, S) so it needs no extra transposes.

`AneLlama` is the full-sequence model: input_ids (1, S) int32 -> logits (1, S, V).
`AneLlamaDecoder` shares its weights and decodes one token at a time with a KV cache held in two
buffers that are written in place, which coremltools turns into `ct.StateType` states.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kimi_student.backends.hf import rope_theta
from kimi_student.errors import KimiStudentError

Layout = Literal["bsc", "bc1s"]
LAYOUTS: tuple[str, ...] = ("bsc", "bc1s")
MASK_VALUE = -1e4  # finite: -inf (or fp32's min) turns into NaN / -inf arithmetic once the model runs in fp16
KV = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class CheckpointError(KimiStudentError):
    """A checkpoint folder this module cannot load: names the file and what is wrong."""


@dataclass(frozen=True)
class LlamaArch:
    """The architecture fields of an HF Llama config.json that the forward pass depends on."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool = False
    mlp_bias: bool = False

    @classmethod
    def from_hf(cls, cfg: dict[str, Any], source: str | Path = "config.json") -> LlamaArch:
        if cfg.get("model_type", "llama") != "llama":
            raise CheckpointError(f"{source}: model_type {cfg.get('model_type')!r} is not 'llama'")
        if cfg.get("hidden_act", "silu") != "silu":
            raise CheckpointError(f"{source}: hidden_act {cfg['hidden_act']!r} is not 'silu'")
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise CheckpointError(
                f"{source}: rope_type {rope.get('rope_type')!r} is not supported (default only)"
            )
        try:
            h, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
            return cls(
                vocab_size=int(cfg["vocab_size"]),
                hidden_size=h,
                intermediate_size=int(cfg["intermediate_size"]),
                n_layers=int(cfg["num_hidden_layers"]),
                n_heads=heads,
                n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or h // heads),
                rope_theta=float(rope_theta(cfg, 10000.0)),
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                attention_bias=bool(cfg.get("attention_bias", False)),
                mlp_bias=bool(cfg.get("mlp_bias", False)),
            )
        except KeyError as e:
            raise CheckpointError(f"{source}: missing {e.args[0]}") from None


def rope_tables(arch: LlamaArch, n: int) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (n, hd) for positions 0..n-1, computed in fp32 exactly as HF's default RoPE."""
    inv_freq = 1.0 / (
        arch.rope_theta ** (torch.arange(0, arch.head_dim, 2, dtype=torch.float) / arch.head_dim)
    )
    freqs = torch.arange(n, dtype=torch.float)[:, None] * inv_freq[None, :]  # (n, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (n, hd)
    return emb.cos(), emb.sin()


def first(t: Tensor, n: int, dim: int) -> Tensor:
    """The first n entries along `dim` (n static). A slice that keeps everything is skipped, because
    torch.export records it as `aten.alias`, an op coremltools cannot convert."""
    return t if t.shape[dim] == n else t.narrow(dim, 0, n)


def rotate_half(x: Tensor, dim: int) -> Tensor:
    """(x1, x2) -> (-x2, x1) along the head dimension `dim` (HF's rotate_half, in either layout)."""
    x1, x2 = x.chunk(2, dim=dim)
    return torch.cat((-x2, x1), dim=dim)


class Proj(nn.Module):
    """y = W x + b: `F.linear` on (1, S, C) in layout bsc, a 1x1 `F.conv2d` on (1, C, 1, S) in bc1s."""

    def __init__(self, c_in: int, c_out: int, bias: bool, layout: Layout):
        super().__init__()
        self.layout = layout
        shape = (c_out, c_in) if layout == "bsc" else (c_out, c_in, 1, 1)
        self.weight = nn.Parameter(torch.zeros(shape))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if self.layout == "bsc":
            return F.linear(x, self.weight, self.bias)
        return F.conv2d(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, layout: Layout):
        super().__init__()
        self.eps, self.axis = eps, (-1 if layout == "bsc" else 1)
        self.weight = nn.Parameter(torch.ones(dim))
        self.layout = layout

    def forward(self, x: Tensor) -> Tensor:  # (1, S, C) or (1, C, 1, S)
        # x / sqrt(mean(x²) + eps) == (x/m) / sqrt(mean((x/m)²) + eps/m²) for any m > 0. With m the max |x| of
        # the position (at least 1, so a zero vector stays finite) every square is <= 1: no fp16 overflow.
        m = x.abs().amax(dim=self.axis, keepdim=True).clamp(min=1.0)
        xs = x / m
        var = (xs * xs).mean(dim=self.axis, keepdim=True)
        y = xs * torch.rsqrt(var + self.eps / m / m)  # eps/m/m: m*m itself could overflow fp16
        w = self.weight if self.layout == "bsc" else self.weight[:, None, None]  # (C,) or (C, 1, 1)
        return y * w


class Attention(nn.Module):
    """Causal GQA attention. Heads are (1, n, S, hd) in bsc and (1, n, hd, S) in bc1s."""

    def __init__(self, a: LlamaArch, layout: Layout):
        super().__init__()
        self.n_heads, self.n_kv, self.hd, self.layout = a.n_heads, a.n_kv_heads, a.head_dim, layout
        self.hd_axis = -1 if layout == "bsc" else -2  # where the head dimension lives in a head tensor
        self.q_proj = Proj(a.hidden_size, a.n_heads * a.head_dim, a.attention_bias, layout)
        self.k_proj = Proj(a.hidden_size, a.n_kv_heads * a.head_dim, a.attention_bias, layout)
        self.v_proj = Proj(a.hidden_size, a.n_kv_heads * a.head_dim, a.attention_bias, layout)
        self.o_proj = Proj(a.n_heads * a.head_dim, a.hidden_size, a.attention_bias, layout)

    def split(self, x: Tensor, n: int) -> Tensor:
        if self.layout == "bsc":  # (1, S, n*hd) -> (1, n, S, hd)
            return x.view(1, x.shape[1], n, self.hd).transpose(1, 2)
        return x.view(1, n, self.hd, x.shape[3])  # (1, n*hd, 1, S) -> (1, n, hd, S)

    def merge(self, x: Tensor) -> Tensor:
        if self.layout == "bsc":  # (1, H, S, hd) -> (1, S, H*hd)
            return x.transpose(1, 2).reshape(1, x.shape[2], self.n_heads * self.hd)
        return x.reshape(1, self.n_heads * self.hd, 1, x.shape[3])  # (1, H, hd, S) -> (1, H*hd, 1, S)

    def repeat_kv(self, x: Tensor) -> Tensor:
        """(1, KV, ...) -> (1, H, ...): query head h reads kv head h // (H/KV), as HF's repeat_kv."""
        rep = self.n_heads // self.n_kv
        if rep == 1:
            return x
        return x[:, :, None].expand(1, self.n_kv, rep, *x.shape[2:]).reshape(1, self.n_heads, *x.shape[2:])

    def grouped(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, rep: int) -> Tensor:
        """Attention of the `rep` query heads of each kv head against that head's keys and values, without
        repeating them (bsc): (1, H, S, hd) -> (1, H, S, hd). Query head h = kv * rep + r reads kv head kv,
        as HF's repeat_kv; the mask broadcasts over the group instead of being copied. The KV cache is never
        copied per head: that tile was a sixth of a 135M decoding step in the MIL executor."""
        s, t = q.shape[2], k.shape[2]
        qg = q.reshape(1, self.n_kv, rep * s, self.hd)  # (1, KV, rep*S, hd): rows (r, s)
        att = torch.matmul(qg, k.transpose(-1, -2)).view(1, self.n_kv, rep, s, t)
        att = torch.softmax(att + mask, dim=-1).view(1, self.n_kv, rep * s, t)
        return torch.matmul(att, v).view(1, self.n_heads, s, self.hd)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, kv: KV | None = None) -> Tensor:
        # cos, sin: (S, hd) in bsc, (hd, S) in bc1s; mask: (S, T) additive, T = keys attended to
        q = self.split(self.q_proj(x), self.n_heads)  # (1, H, S, hd) | (1, H, hd, S)
        k = self.split(self.k_proj(x), self.n_kv)  # (1, KV, S, hd) | (1, KV, hd, S)
        v = self.split(self.v_proj(x), self.n_kv)
        q = q * cos + rotate_half(q, self.hd_axis) * sin
        k = k * cos + rotate_half(k, self.hd_axis) * sin
        if kv is not None:  # decoding: store this step's k, v and attend to the whole cache (T = context)
            k, v = kv(k, v)
        q = q * (1.0 / math.sqrt(self.hd))  # scale before the product: keeps Q·Kᵀ in fp16 range
        rep = self.n_heads // self.n_kv
        if self.layout == "bsc" and rep > 1:
            return self.o_proj(self.merge(self.grouped(q, k, v, mask, rep)))
        k, v = self.repeat_kv(k), self.repeat_kv(v)
        if self.layout == "bsc":
            att = torch.matmul(q, k.transpose(-1, -2))  # (1, H, S, T)
        else:
            att = torch.matmul(q.transpose(-1, -2), k)  # (1, H, S, T)
        att = torch.softmax(att + mask, dim=-1)
        if self.layout == "bsc":
            y = torch.matmul(att, v)  # (1, H, S, hd)
        else:
            y = torch.matmul(v, att.transpose(-1, -2))  # (1, H, hd, S)
        return self.o_proj(self.merge(y))


class MLP(nn.Module):
    def __init__(self, a: LlamaArch, layout: Layout):
        super().__init__()
        self.gate_proj = Proj(a.hidden_size, a.intermediate_size, a.mlp_bias, layout)
        self.up_proj = Proj(a.hidden_size, a.intermediate_size, a.mlp_bias, layout)
        self.down_proj = Proj(a.intermediate_size, a.hidden_size, a.mlp_bias, layout)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, a: LlamaArch, layout: Layout):
        super().__init__()
        self.input_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps, layout)
        self.self_attn = Attention(a, layout)
        self.post_attention_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps, layout)
        self.mlp = MLP(a, layout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, kv: KV | None = None) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv)
        return x + self.mlp(self.post_attention_layernorm(x))


class AneLlama(nn.Module):
    """Full-sequence model: input_ids (1, S) int32, S <= max_seq -> logits (1, S, V)."""

    def __init__(self, arch: LlamaArch, max_seq: int, layout: Layout = "bsc"):
        super().__init__()
        if layout not in LAYOUTS:
            raise KimiStudentError(f"layout {layout!r}: use one of {', '.join(LAYOUTS)}")
        self.arch, self.max_seq, self.layout = arch, max_seq, layout
        self.embed_tokens = nn.Embedding(arch.vocab_size, arch.hidden_size)
        self.layers = nn.ModuleList(Block(arch, layout) for _ in range(arch.n_layers))
        self.norm = RMSNorm(arch.hidden_size, arch.rms_norm_eps, layout)
        # the head is a linear map on (1, S, C) in both layouts: the logits leave as (1, S, V) anyway, and a
        # tied head then has the embedding's exact shape, so the package stores that matrix once, not twice
        self.lm_head = Proj(arch.hidden_size, arch.vocab_size, False, "bsc")
        if arch.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rope_tables(arch, max_seq)  # (max_seq, hd)
        if layout == "bc1s":
            cos, sin = cos.T.contiguous(), sin.T.contiguous()  # (hd, max_seq): positions along the last axis
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        mask = torch.full((max_seq, max_seq), MASK_VALUE).triu(1)  # 0 on and below the diagonal
        self.register_buffer("mask", mask, persistent=False)

    def embed(self, input_ids: Tensor) -> Tensor:
        x = self.embed_tokens(input_ids)  # (1, S, C)
        return x if self.layout == "bsc" else x.transpose(1, 2).unsqueeze(2)  # (1, C, 1, S)

    def final(self, x: Tensor) -> Tensor:
        """The final norm, as (1, S, C): what the head reads (HF's last hidden state)."""
        x = self.norm(x)  # (1, S, C) | (1, C, 1, S)
        return x.squeeze(2).transpose(1, 2) if self.layout == "bc1s" else x

    def head(self, x: Tensor) -> Tensor:
        return self.lm_head(self.final(x))  # (1, S, V)

    def forward(self, input_ids: Tensor) -> Tensor:
        s = input_ids.shape[1]  # a Python int under torch.export with a static shape
        if s > self.max_seq:
            raise KimiStudentError(f"sequence of {s} tokens exceeds max_seq {self.max_seq}")
        t_axis = 0 if self.layout == "bsc" else 1  # position axis of the rope tables
        cos, sin = first(self.cos, s, t_axis), first(self.sin, s, t_axis)  # (S, hd) | (hd, S)
        mask = first(first(self.mask, s, 0), s, 1)  # (S, S)
        x = self.embed(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.head(x)


class AneLlamaDecoder(nn.Module):
    """`q_len` tokens at a time with a KV cache: (input_ids (1, Q) int32, position (1,) int32) -> logits
    (1, Q, V), the tokens taking positions position .. position+Q-1.

    Q = 1 decodes; Q > 1 fills the cache with a chunk of the prompt (prefill) or checks a drafted
    continuation (verify) in one call. The caches are buffers k_cache, v_cache of shape
    (L, KV, context, hd) [bsc] or (L, KV, hd, context) [bc1s], written in place at those positions;
    coremltools maps mutated buffers to `ct.StateType` states. Query i sees the keys at or before its own
    position, so entries after it (stale, zero, or written by the padding of a chunk) are never read:
    no reset is needed between sequences as long as each starts at position 0, and a rejected draft's
    entries are simply overwritten by the next call. position + Q must not exceed the context.
    With `hidden`, a second output: the final hidden states (1, Q, C) that the head reads, which a feature
    drafter drafts from.
    """

    def __init__(self, model: AneLlama, context: int, q_len: int = 1, hidden: bool = False):
        super().__init__()
        a, self.layout, self.context, self.q_len = model.arch, model.layout, context, q_len
        self.hidden = hidden
        if not 1 <= q_len <= context:
            raise KimiStudentError(f"q_len {q_len} must be between 1 and the context {context}")
        # share the modules, not the model: its (max_seq, max_seq) mask would ride along as a constant
        self.embed_tokens, self.layers, self.norm, self.lm_head = (
            model.embed_tokens,
            model.layers,
            model.norm,
            model.lm_head,
        )
        cos, sin = rope_tables(a, context)  # (context, hd)
        if self.layout == "bc1s":
            cos, sin = cos.T.contiguous(), sin.T.contiguous()  # (hd, context)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("positions", torch.arange(context, dtype=torch.int32), persistent=False)
        self.register_buffer("offsets", torch.arange(q_len, dtype=torch.int32), persistent=False)
        self.register_buffer("layer_ids", torch.arange(a.n_layers, dtype=torch.int32), persistent=False)
        self.register_buffer("kv_ids", torch.arange(a.n_kv_heads, dtype=torch.int32), persistent=False)
        self.register_buffer("hd_ids", torch.arange(a.head_dim, dtype=torch.int32), persistent=False)
        shape = (a.n_layers, a.n_kv_heads, context, a.head_dim)
        if self.layout == "bc1s":
            shape = (a.n_layers, a.n_kv_heads, a.head_dim, context)
        self.register_buffer("k_cache", torch.zeros(shape))
        self.register_buffer("v_cache", torch.zeros(shape))

    embed = AneLlama.embed
    final = AneLlama.final

    def example_args(self) -> tuple[Tensor, ...]:
        """Inputs of the call's shapes and dtypes, for torch.export."""
        return torch.zeros(1, self.q_len, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)

    def forward(self, input_ids: Tensor, position: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        h = self.final(self.layers_at(self.embed(input_ids), position))
        return (self.lm_head(h), h) if self.hidden else self.lm_head(h)

    def layers_at(self, x: Tensor, position: Tensor) -> Tensor:
        """The layers on x (the Q inputs at positions position ..), each writing its cache."""
        t_axis = 0 if self.layout == "bsc" else 1  # position axis of the rope tables
        where = position + self.offsets  # (Q,) the positions this call writes
        cos = self.cos.index_select(t_axis, where)  # (Q, hd) | (hd, Q)
        sin = self.sin.index_select(t_axis, where)
        # (Q, context): query i sees keys at or before its position; computed, not gathered from a
        # (context, context) table, which would cost context² constants
        mask = torch.where(self.positions[None, :] <= where[:, None], 0.0, MASK_VALUE)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, self._cache_writer(i, where))
        return x

    def _cache_writer(self, i: int, where: Tensor) -> KV:
        # Index tensors for every cache axis but the last, all of the update's shape (KV, Q) | (KV, hd, Q):
        # then the write is one scatter. coremltools converts nothing for a vector of positions beside a
        # whole-axis slice, and Q one-position writes cost thousands of ops (minutes of conversion).
        if self.layout == "bsc":
            shape = (self.kv_ids.shape[0], where.shape[0])
            at = (self.kv_ids[:, None], where[None, :])
        else:
            shape = (self.kv_ids.shape[0], self.hd_ids.shape[0], where.shape[0])
            at = (self.kv_ids[:, None, None], self.hd_ids[None, :, None], where[None, None, :])
        index = tuple(t.expand(shape) for t in (self.layer_ids[i : i + 1].reshape((1,) * len(shape)), *at))

        def write(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
            # k, v: (1, KV, Q, hd) | (1, KV, hd, Q) -> the layer's whole cache (1, KV, T, hd) | (1, KV, hd, T)
            self.k_cache.index_put_(index, k[0])
            self.v_cache.index_put_(index, v[0])
            return self.k_cache[i][None], self.v_cache[i][None]

        return write

    def reset(self) -> None:
        self.k_cache.zero_()
        self.v_cache.zero_()


# ---- loading an HF checkpoint folder ------------------------------------------------------------------


def read_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found (expected an HF Llama checkpoint folder)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read: {e}") from None


def read_state_dict(folder: str | Path) -> dict[str, Tensor]:
    """model.safetensors, or the shards listed in model.safetensors.index.json."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files = [folder / "model.safetensors"]
    if index.is_file():
        files = [folder / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    out: dict[str, Tensor] = {}
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"{f}: not found (expected safetensors weights)")
        try:
            out.update(load_file(str(f)))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{f}: cannot read safetensors: {e}") from None
    return out


def load_ane_llama(
    folder: str | Path, max_seq: int | None = None, layout: Layout = "bsc", dtype: torch.dtype = torch.float32
) -> AneLlama:
    """Build `AneLlama` from an HF checkpoint folder (config.json + safetensors), in eval mode."""
    arch = LlamaArch.from_hf(read_config(folder), Path(folder) / "config.json")
    model = AneLlama(arch, max_seq or min(arch.max_position_embeddings, 2048), layout)
    sd = {k.removeprefix("model."): v for k, v in read_state_dict(folder).items()}
    if "lm_head.weight" not in sd:
        if not arch.tie_word_embeddings:
            raise CheckpointError(f"{folder}: no lm_head.weight and tie_word_embeddings is false")
        sd["lm_head.weight"] = sd["embed_tokens.weight"]
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(k for k in set(sd) - set(own) if not k.endswith("rotary_emb.inv_freq"))
    if missing or unexpected:
        raise CheckpointError(
            f"{folder}: weights do not match the config: missing {missing}, unexpected {unexpected}"
        )
    for k, target in own.items():
        w = sd[k]
        if w.numel() != target.numel():
            raise CheckpointError(f"{folder}: {k} has shape {tuple(w.shape)}, expected {tuple(target.shape)}")
        target.copy_(w.reshape(target.shape))  # 2-D linear weights become (out, in, 1, 1) conv weights
    return model.to(dtype).eval()


class AneFeatureDrafter(AneLlamaDecoder):
    """The feature drafter (models/feature_drafter.py) as a stateful decoder: (feats (1, Q, C) float,
    next_ids (1, Q) int32, position (1,) int32) -> (states (1, Q, C), logits (1, Q, H)): for the pairs
    (target state j, token j+1) at positions position .., the predicted next states and their scores over the
    drafter's cut vocabulary (`vocab_ids` order). Its one decoder layer is a Llama block with its own
    cache, as the Worker's decoder keeps one (a draft's entries are written over by the next call); the
    embedding is the Worker's, whole (a pair's token may be any the Worker wrote or read). bsc layout."""

    def __init__(self, drafter: Any, context: int, q_len: int = 1):
        c = drafter.cfg
        arch = LlamaArch(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            intermediate_size=c.intermediate_size,
            n_layers=1,
            n_heads=c.num_attention_heads,
            n_kv_heads=c.num_key_value_heads,
            head_dim=c.head_dim,
            rope_theta=c.rope_theta,
            rms_norm_eps=c.rms_norm_eps,
            max_position_embeddings=context,
            tie_word_embeddings=False,
        )
        block = Block(arch, "bsc")
        names = {
            "input_layernorm": "norm1",
            "self_attn.q_proj": "q",
            "self_attn.k_proj": "k",
            "self_attn.v_proj": "v",
            "self_attn.o_proj": "o",
            "post_attention_layernorm": "norm2",
            "mlp.gate_proj": "gate",
            "mlp.up_proj": "up",
            "mlp.down_proj": "down",
        }
        with torch.no_grad():
            for ours, theirs in names.items():
                block.get_submodule(ours).weight.copy_(drafter.get_submodule(theirs).weight)
        parts = type("Parts", (), {})()  # what AneLlamaDecoder takes from a model; no norm, no lm_head
        parts.arch, parts.layout = arch, "bsc"
        parts.embed_tokens = nn.Embedding.from_pretrained(drafter.embed.float(), freeze=True)
        parts.layers, parts.norm, parts.lm_head = nn.ModuleList([block]), None, None
        super().__init__(parts, context, q_len)
        self.fc = nn.Linear(2 * c.hidden_size, c.hidden_size)
        self.fc.load_state_dict(drafter.fc.state_dict())
        self.register_buffer("head_rows", drafter.head.detach().float().clone(), persistent=False)

    def example_args(self) -> tuple[Tensor, ...]:
        feats = torch.zeros(1, self.q_len, self.fc.out_features)
        return feats, *super().example_args()

    def forward(  # type: ignore[override]
        self, feats: Tensor, next_ids: Tensor, position: Tensor
    ) -> tuple[Tensor, Tensor]:
        x = self.fc(torch.cat([feats, self.embed_tokens(next_ids)], -1))
        x = self.layers_at(x, position)
        return x, F.linear(x, self.head_rows)
