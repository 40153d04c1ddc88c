"""The learning-rate schedule and the sequence-length curriculum, value by value (README promise
`trainer-schedule`; the trainer's use of them is tested in tests/integration/train/test_train.py)."""

from __future__ import annotations

import math

import pytest

from kimi_student.train.config import CurriculumStage, TrainConfig

CONFIG = TrainConfig(lr=1e-3, min_lr_ratio=0.1, warmup_steps=4, max_steps=24)

LR_CASES = [
    # (step, lr): linear warm-up over 4 steps, then cosine from 1e-3 down to 1e-4 at step 24
    pytest.param(0, 0.25e-3, id="first-warm-up-step"),
    pytest.param(3, 1e-3, id="last-warm-up-step-reaches-lr"),
    pytest.param(4, 1e-3, id="cosine-starts-at-lr"),
    pytest.param(14, 1e-4 + 0.9e-3 * 0.5, id="half-way-is-the-mean-of-lr-and-floor"),
    pytest.param(24, 1e-4, id="ends-at-lr-times-min_lr_ratio"),
    pytest.param(40, 1e-4, id="past-max_steps-stays-at-the-floor"),
]


@pytest.mark.parametrize(("step", "lr"), LR_CASES)
def test_lr_at(step: int, lr: float) -> None:
    assert math.isclose(CONFIG.lr_at(step), lr, rel_tol=1e-12)


def test_cosine_decays_monotonically_after_warm_up() -> None:
    lrs = [CONFIG.lr_at(s) for s in range(4, 25)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_no_warm_up_starts_at_lr() -> None:
    assert TrainConfig(lr=2e-3, warmup_steps=0, max_steps=10).lr_at(0) == 2e-3


CURRICULUM = TrainConfig(
    lr=1e-3,
    max_steps=10,
    seq_curriculum=(
        CurriculumStage(seq_len=64, until_step=3),
        CurriculumStage(seq_len=128, until_step=5),
        CurriculumStage(seq_len=256),
    ),
)


@pytest.mark.parametrize(("step", "seq_len"), [(0, 64), (2, 64), (3, 128), (4, 128), (5, 256), (10**6, 256)])
def test_seq_len_at(step: int, seq_len: int) -> None:
    assert CURRICULUM.seq_len_at(step) == seq_len
