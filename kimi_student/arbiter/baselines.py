"""Shortcut baselines that must fail on the Judge dataset: if a candidate's own text (its rationale and diff,
without spec, policy, evidence or waivers) predicts which candidate wins, the set leaks its labels and is
invalid (issue 14: each must stay <= 0.60 pairwise accuracy on the held-out pairs, ties excluded).

- length: the longer (or shorter: whichever did better on the training pairs) candidate wins.
- bag of words: a ridge regression from the hashed words of a candidate's text to its status rank
  (FAIL 0, WAIVER_REQUIRED 1, PASS 2), fitted on the training single cases; the higher score wins.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np

from kimi_student.arbiter.cases import STATUS_RANK

BUCKETS = 4096
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")


def own_text(candidate: dict[str, Any]) -> str:
    """What a candidate says of itself: its rationale and its diff."""
    return candidate["rationale"] + "\n" + candidate["diff"]


def _features(text: str) -> np.ndarray:
    x = np.zeros(BUCKETS, dtype=np.float32)
    for word in set(_WORD.findall(text.lower())):
        x[int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % BUCKETS] = 1.0
    return x


def _pairs(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(text a, text b, winner) of every pair record whose winner is not a tie."""
    out = []
    for r in rows:
        if r["mode"] == "pair" and r["label"]["winner"] != "tie":
            a, b = r["case"]["candidates"]
            out.append((own_text(a), own_text(b), r["label"]["winner"]))
    return out


def _accuracy(pred: list[str], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(pred, gold)) / max(1, len(gold))


def length_baseline(train: list[dict[str, Any]], heldout: list[dict[str, Any]]) -> dict[str, Any]:
    def predict(pairs: list[tuple[str, str, str]], longer: bool) -> list[str]:
        return [
            "tie" if len(a) == len(b) else ("a" if (len(a) > len(b)) == longer else "b") for a, b, _ in pairs
        ]

    tr, ho = _pairs(train), _pairs(heldout)
    longer = _accuracy(predict(tr, True), [w for *_, w in tr]) >= _accuracy(
        predict(tr, False), [w for *_, w in tr]
    )
    return {
        "rule": "longer wins" if longer else "shorter wins",
        "pairs": len(ho),
        "pairwise_accuracy": _accuracy(predict(ho, longer), [w for *_, w in ho]),
    }


def _ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """argmin |xw - y|^2 + ridge |w|^2, solved in the smaller of its two equal forms: (x'x + rI)^-1 x'y over the
    features, or x'(xx' + rI)^-1 y over the cases (a set of tens of cases need not solve a 4,096-square system)."""
    n, d = x.shape
    if n < d:
        return x.T @ np.linalg.solve(x @ x.T + ridge * np.eye(n), y)
    return np.linalg.solve(x.T @ x + ridge * np.eye(d), x.T @ y)


def bow_baseline(
    train: list[dict[str, Any]], heldout: list[dict[str, Any]], ridge: float = 10.0
) -> dict[str, Any]:
    singles = [r for r in train if r["mode"] == "single"]
    x = np.stack([_features(own_text(r["case"]["candidates"][0])) for r in singles]).astype(np.float64)
    y = np.array([STATUS_RANK[r["label"]["status"]] for r in singles], dtype=np.float64)
    mean = y.mean()
    w = _ridge(x, y - mean, ridge)
    ho = _pairs(heldout)
    pred = []
    for a, b, _ in ho:
        sa, sb = float(_features(a) @ w), float(_features(b) @ w)
        pred.append("tie" if sa == sb else "a" if sa > sb else "b")
    # the same model on held-out single cases: status by the nearest rank, against the majority status
    ho_singles = [r for r in heldout if r["mode"] == "single"]
    ranks = {v: k for k, v in STATUS_RANK.items()}
    guess = [
        ranks[int(np.clip(np.rint(float(_features(own_text(r["case"]["candidates"][0])) @ w) + mean), 0, 2))]
        for r in ho_singles
    ]
    gold = [r["label"]["status"] for r in ho_singles]
    majority = max(set(gold), key=gold.count) if gold else ""
    return {
        "pairs": len(ho),
        "pairwise_accuracy": _accuracy(pred, [g for *_, g in ho]),
        "single_status_accuracy": _accuracy(guess, gold),
        "single_majority_accuracy": _accuracy([majority] * len(gold), gold),
    }
