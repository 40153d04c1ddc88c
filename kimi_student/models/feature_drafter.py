"""The Drafter as a feature drafter (EAGLE, Li et al. 2024): one decoder layer that reads the target's own
final hidden state and predicts the next one, so that the target's head turns it into a draft token.

Input at position j: the target's final hidden state f_j (what its head reads to predict token j+1) and the
embedding of token j+1, joined by a linear map; one Llama decoder layer (causal over the positions before)
predicts f_{j+1}; the head gives the draft for token j+2. Drafting k tokens feeds each prediction back as the
next input. A small model is enough because f_j already holds most of what the target knows about the next
tokens; what makes a draft step cheap on a CPU is the head: the target's embedding rows of a vocabulary cut
to the tokens the Worker writes (`vocab_ids`), not its whole 49k-row matrix.

Frozen and shared with the target: the embedding and the head rows, taken from the target when the drafter
is built or loaded (`load(folder, target)`), never stored: a drafter folder holds config.json (`kind:
feature_drafter`, the target's weights fingerprint, which `eval --draft-model` checks) and model.safetensors
(its own layer and the cut vocabulary's ids), ~10 MB for SmolLM2-135M.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

KIND = "feature_drafter"


@dataclass(frozen=True)
class DrafterConfig:
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    rope_theta: float
    rms_norm_eps: float
    vocab_size: int  # the target's
    head_size: int  # rows of the cut head
    target_sha256: str  # the target's weights, as fingerprint.weights_sha256 gives them

    @classmethod
    def of_target(cls, cfg: Any, head_size: int, target_sha256: str) -> DrafterConfig:
        """The target's layer shape (an HF Llama config)."""
        rope = getattr(cfg, "rope_parameters", None) or {}
        return cls(
            hidden_size=cfg.hidden_size,
            num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_key_value_heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            intermediate_size=cfg.intermediate_size,
            rope_theta=float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))),
            rms_norm_eps=float(cfg.rms_norm_eps),
            vocab_size=cfg.vocab_size,
            head_size=head_size,
            target_sha256=target_sha256,
        )


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def rotate(x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary position embedding of x (B, H, T, hd) at positions pos (T,), Llama's half-split layout."""
    hd = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = pos.float()[:, None] * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class KVCache:
    """Keys and values of the positions fed so far; `crop(n)` keeps the first n (drafts are dropped)."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], 2)
        self.v = v if self.v is None else torch.cat([self.v, v], 2)
        return self.k, self.v

    def crop(self, n: int) -> None:
        if self.k is not None and n < self.k.shape[2]:
            self.k, self.v = self.k[:, :, :n], self.v[:, :, :n]  # type: ignore[index]


class FeatureDrafter(nn.Module):
    def __init__(self, cfg: DrafterConfig, embed: torch.Tensor, vocab_ids: torch.Tensor):
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.hidden_size, cfg.head_dim
        self.fc = nn.Linear(2 * d, d)
        self.norm1, self.norm2 = RMSNorm(d, cfg.rms_norm_eps), RMSNorm(d, cfg.rms_norm_eps)
        self.q = nn.Linear(d, cfg.num_attention_heads * hd, bias=False)
        self.k = nn.Linear(d, cfg.num_key_value_heads * hd, bias=False)
        self.v = nn.Linear(d, cfg.num_key_value_heads * hd, bias=False)
        self.o = nn.Linear(cfg.num_attention_heads * hd, d, bias=False)
        self.gate = nn.Linear(d, cfg.intermediate_size, bias=False)
        self.up = nn.Linear(d, cfg.intermediate_size, bias=False)
        self.down = nn.Linear(cfg.intermediate_size, d, bias=False)
        # frozen, the target's: buffers, not parameters
        self.register_buffer("embed", embed.detach().clone())
        self.register_buffer("vocab_ids", vocab_ids.detach().clone().long())
        self.register_buffer("head", embed.detach()[vocab_ids].clone())

    def forward(
        self, feats: torch.Tensor, next_ids: torch.Tensor, pos: torch.Tensor, cache: KVCache | None = None
    ) -> torch.Tensor:
        """feats (B, T, d): the target's (or predicted) states at positions pos; next_ids (B, T): the tokens
        after them -> the predicted states at the next positions (B, T, d)."""
        c = self.cfg
        x = self.fc(torch.cat([feats, self.embed[next_ids]], -1))
        b, t, _ = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, t, c.num_attention_heads, c.head_dim).transpose(1, 2)
        k = self.k(h).view(b, t, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        v = self.v(h).view(b, t, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        q, k = rotate(q, pos, c.rope_theta), rotate(k, pos, c.rope_theta)
        if cache is not None:
            k, v = cache.append(k, v)
        rep = c.num_attention_heads // c.num_key_value_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        s = k.shape[2]  # the query at row i sees every cached position and the rows up to i
        mask = None if t == 1 else torch.ones(t, s, dtype=torch.bool).tril(s - t)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Logits over the cut vocabulary (`vocab_ids` order)."""
        return feats @ self.head.T

    def head_with(self, prompt: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, head rows) of the cut vocabulary joined by the prompt's tokens: what drafting scores (an
        answer copies from its request)."""
        ids = torch.tensor(sorted(set(self.vocab_ids.tolist()) | set(prompt)))
        return ids, self.embed[ids]


def build(target: Any, vocab_ids: list[int], target_sha256: str, seed: int = 0) -> FeatureDrafter:
    """A fresh drafter for `target` (an HF Llama causal LM) with a head cut to `vocab_ids`."""
    torch.manual_seed(seed)
    cfg = DrafterConfig.of_target(target.config, len(vocab_ids), target_sha256)
    embed = target.get_input_embeddings().weight.detach().float()
    return FeatureDrafter(cfg, embed, torch.tensor(sorted(set(vocab_ids))))


def save(model: FeatureDrafter, folder: Path) -> Path:
    from safetensors.torch import save_file

    from kimi_student.outputs import folder_writer

    with folder_writer(Path(folder)) as tmp:
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in ("embed", "head")}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps({"kind": KIND, **asdict(model.cfg)}, indent=1) + "\n")
    return Path(folder)


def is_feature_drafter(folder: Path) -> bool:
    try:
        return json.loads((Path(folder) / "config.json").read_text()).get("kind") == KIND
    except (OSError, ValueError):
        return False


def target_sha256(folder: Path) -> str:
    """The fingerprint of the model the drafter was trained for (no weights loaded)."""
    return str(json.loads((Path(folder) / "config.json").read_text())["target_sha256"])


def load(folder: Path, target: Any) -> FeatureDrafter:
    """The drafter in `folder`, with the embedding of `target` (the HF model it was trained for)."""
    from safetensors.torch import load_file

    raw = json.loads((Path(folder) / "config.json").read_text())
    raw.pop("kind")
    cfg = DrafterConfig(**raw)
    state = load_file(str(Path(folder) / "model.safetensors"))
    embed = target.get_input_embeddings().weight.detach().float()
    model = FeatureDrafter(cfg, embed, state["vocab_ids"])
    model.load_state_dict({**state, "embed": model.embed, "head": model.head}, strict=True)
    return model.eval()
