"""A linear probe: multinomial logistic regression on one layer's states, and its held-out scores (pure
torch, seeded, full-batch L-BFGS: the same inputs give the same probe)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ProbeScore:
    accuracy: float
    macro_f1: float


def macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean F1 over the classes that occur in the truth or the predictions."""
    classes = np.union1d(truth, pred)
    f1 = []
    for c in classes:
        tp = int(np.sum((pred == c) & (truth == c)))
        fp, fn = int(np.sum((pred == c) & (truth != c))), int(np.sum((pred != c) & (truth == c)))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1)) if f1 else 0.0


def score(truth: np.ndarray, pred: np.ndarray) -> ProbeScore:
    return ProbeScore(float(np.mean(truth == pred)) if len(truth) else 0.0, macro_f1(truth, pred))


def majority(train_y: np.ndarray, test_y: np.ndarray) -> ProbeScore:
    """The baseline: always the training set's most frequent class."""
    values, counts = np.unique(train_y, return_counts=True)
    return score(test_y, np.full(len(test_y), values[np.argmax(counts)]))


def fit_and_score(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    l2: float = 1e-3,
    iters: int = 40,
) -> ProbeScore:
    """Standardise with the training rows' mean and spread, fit W, b by L-BFGS on cross-entropy + l2 |W|^2,
    score the held-out rows."""
    xt = torch.from_numpy(x_train.astype(np.float32))
    mean, std = xt.mean(0), xt.std(0).clamp_min(1e-6)
    xt = (xt - mean) / std
    yt = torch.from_numpy(y_train)
    w = torch.zeros(xt.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        xs = (torch.from_numpy(x_test.astype(np.float32)) - mean) / std
        pred = (xs @ w + b).argmax(1).numpy()
    return score(y_test, pred)
