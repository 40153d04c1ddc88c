"""Small torch models the executor tests convert: Llama blocks (plain and with a KV cache in
buffers), an ANE-layout block, an op zoo, and a model with an op the executor lacks."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, DIM, HEADS, KV_HEADS, HIDDEN, MAXLEN = 64, 32, 4, 2, 64, 16


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
