"""`drafter train`'s settings, apart from the training loop so that the CLI shows them as its defaults
without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

DIVERGENCES = ("forward_kl", "tvd")


@dataclass(frozen=True)
class DrafterTrainConfig:
    objective: str = "kd"  # kd | ce
    steps: int = 1000
    lr: float = 1e-3
    warmup: int = 30
    tokens_per_batch: int = 2048
    kd_weight: float = 1.0  # at 0.1 the KL is ~4% of the loss; at 1.0 kd drafts better (README, stops 52-53)
    noise: float = 0.1
    # kd: forward_kl | tvd (DistillSpec's two; tvd drafted worse at the floor: README, stop 55)
    divergence: str = "forward_kl"
    second: float = 1.0  # weight of each pass after the first (each reads the one before's predicted states)
    passes: int = 2  # 2: the second draft's input is trained; 3: also the third's (K = 3 reads it)
    prompt_weight: float = (
        1.0  # weight of the pairs whose next token is the prompt's (drafting sees answers only)
    )
    seed: int = 0
    log_every: int = 50
