"""Training a feature drafter (models/feature_drafter.py) on `drafter data` folders, a loop to read top to
bottom.

Each sequence (prompt + the Worker's greedy answer, with the Worker's final hidden states f_0..f_{T-1}) gives
the pairs (f_j, token j+1) -> f_{j+1}. Two objectives:

- `kd` (the Drafter, distilled from the Worker): smooth-L1 from the predicted state to f_{j+1}, plus
  `kd_weight` x the forward KL (or, `divergence` tvd, the total variation) from the Worker's next-token
  distribution (its head on f_{j+1}, over the cut vocabulary) to the drafter's.
- `ce` (the data-only baseline): cross-entropy of the next token in the data, nothing of the Worker's
  distribution or states as targets (its states stay the inputs: the architecture is the same).

Both read what drafting reads: input states get uniform noise (`noise` x their spread), and `passes` > 1 runs
the layer again on its own predicted states (the k-th draft reads a state predicted k-1 times).

The vocabulary is cut to the tokens the data holds (the drafter can only propose those). Deterministic for a
seed; writes the drafter folder and train_log.jsonl (one row per `log_every` steps, with held-out accuracy
when held-out data is given).
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from kimi_student.drafter.config import DIVERGENCES, DrafterTrainConfig
from kimi_student.drafter.data import read_sequences

Sequence = tuple[list[int], int, torch.Tensor]


def batches(seqs: list[Sequence], tokens: int) -> list[list[int]]:
    """Indices of sequences grouped by length, each group at most `tokens` padded tokens."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        n = len(seqs[i][0])
        if cur and (len(cur) + 1) * n > tokens:
            out.append(cur)
            cur = []
        cur.append(i)
    return out + ([cur] if cur else [])


def padded(seqs: list[Sequence], idx: list[int], d: int) -> dict[str, torch.Tensor]:
    """states (B, L, d), next ids (B, L): token j+1 beside state j; `after`: token j+2; `pair` marks the pairs
    whose target state f_{j+1} exists, `answer` those whose token j+2 is the answer's."""
    length = max(len(seqs[i][0]) for i in idx)
    b = len(idx)
    out = {
        "states": torch.zeros(b, length, d),
        "next": torch.zeros(b, length, dtype=torch.long),
        "after": torch.zeros(b, length, dtype=torch.long),
        "pair": torch.zeros(b, length, dtype=torch.bool),
        "answer": torch.zeros(b, length, dtype=torch.bool),
    }
    for r, i in enumerate(idx):
        toks, _, states = seqs[i]
        n = len(toks)
        out["states"][r, :n] = states.float()
        out["next"][r, : n - 1] = torch.tensor(toks[1:])
        out["after"][r, : n - 2] = torch.tensor(toks[2:])
        out["pair"][r, : n - 2] = True  # pair j predicts f_{j+1} and, through the head, token j+2
        out["answer"][r, max(seqs[i][1] - 2, 0) : n - 2] = True
    return out


def step_loss(
    model: Any, b: dict[str, torch.Tensor], cfg: DrafterTrainConfig, spread: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """The objective on one batch; with `second` and `passes` > 1, also on later passes: pass p (from 2) reads
    at j+1 the pass before's prediction of f_{j+1} (what the drafter reads from its p-th draft on), at 0 the
    Worker's own state, and is scored from position p-1 on (where its input has been predicted p-1 times)."""
    states, pair = b["states"], b["pair"]
    if not cfg.prompt_weight:
        pair = pair & b["answer"]
    x = states + (torch.rand_like(states) - 0.5) * 2 * cfg.noise * spread if cfg.noise else states
    pos = torch.arange(states.shape[1])
    want = torch.roll(states, -1, dims=1)  # f_{j+1} beside pair j
    pred = model(x, b["next"], pos)
    loss, parts = _objective(model, pred, want, b, pair, cfg)
    later = pair
    for p in range(2, cfg.passes + 1) if cfg.second else ():
        later = later.clone()
        later[:, p - 2] = False
        pred = model(torch.cat([x[:, :1], pred[:, :-1]], 1), b["next"], pos)
        loss_p, parts_p = _objective(model, pred, want, b, later, cfg)
        loss = loss + cfg.second * loss_p
        name = "second" if p == 2 else "third" if p == 3 else f"pass{p}"
        parts |= {f"{k}_{name}": v for k, v in parts_p.items()}
    return loss, parts


def _objective(
    model: Any,
    pred: torch.Tensor,
    want: torch.Tensor,
    b: dict[str, torch.Tensor],
    mask: torch.Tensor,
    cfg: DrafterTrainConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    logits = model.logits(pred[mask])
    w = torch.where(b["answer"][mask], 1.0, cfg.prompt_weight)
    w = w / w.sum()  # a weighted mean over the pairs (all weights 1: the plain mean)
    if cfg.objective == "kd":
        teacher = F.log_softmax(model.logits(want[mask]), -1)
        div = (divergence(cfg.divergence, teacher, F.log_softmax(logits, -1)) * w).sum()
        reg = (F.smooth_l1_loss(pred[mask], want[mask], reduction="none").mean(-1) * w).sum()
        name = "kl_forward" if cfg.divergence == "forward_kl" else cfg.divergence
        return reg + cfg.kd_weight * div, {"state_l1": float(reg.detach()), name: float(div.detach())}
    ce = (F.cross_entropy(logits, model.cut[b["after"][mask]], reduction="none") * w).sum()
    return ce, {"ce": float(ce.detach())}


def divergence(kind: str, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Per row, from the Worker's log-probabilities to the drafter's: forward KL (mass where the Worker puts
    it) or the total variation distance (1 - TVD is a sampled check's acceptance rate; DistillSpec)."""
    if kind == "forward_kl":
        return F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1)
    if kind == "tvd":
        return 0.5 * (teacher.exp() - student.exp()).abs().sum(-1)
    raise ValueError(f"divergence {kind!r}: choose one of {', '.join(DIVERGENCES)}")


@torch.no_grad()
def heldout_accuracy(model: Any, seqs: list[Sequence]) -> dict[str, float]:
    """On the answers' tokens, with the head drafting uses (the cut vocabulary and the prompt's tokens): how
    often the first draft is the Worker's next token (from the Worker's own states), and the second given a
    right first (read after the drafter's own predicted state)."""
    hit = total = hit2 = total2 = 0
    for tokens, plen, states in seqs:
        ids, head = model.head_with(tokens[:plen])
        n = len(tokens)
        pos = torch.arange(n - 2)
        x, nxt = states[None, : n - 2].float(), torch.tensor([tokens[1 : n - 1]])
        pred = model(x, nxt, pos)
        after = torch.tensor(tokens[2:])
        first = ids[(pred[0] @ head.T).argmax(-1)]
        answer = torch.arange(n - 2) >= plen - 2
        ok = (first == after) & answer
        hit, total = hit + int(ok.sum()), total + int(answer.sum())
        pred2 = model(pred, after[None], pos + 1)  # the right first draft, after the predicted state
        second = ids[(pred2[0, :-1] @ head.T).argmax(-1)]
        ok1 = ok[:-1]
        hit2, total2 = hit2 + int(((second == after[1:]) & ok1).sum()), total2 + int(ok1.sum())
    return {"first": hit / max(total, 1), "second_given_first": hit2 / max(total2, 1)}


def train_drafter(
    target: Path,
    data: list[Path],
    out: Path,
    cfg: DrafterTrainConfig,
    heldout: list[Path] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    from tqdm import tqdm

    from kimi_student.backends.hf import load_causal_lm
    from kimi_student.fingerprint import weights_sha256
    from kimi_student.models import feature_drafter

    random.seed(cfg.seed)
    seqs = list(read_sequences(data))
    held = list(read_sequences(heldout)) if heldout else []
    vocab = sorted({t for s, _, _ in seqs for t in s})
    target_model = load_causal_lm(target)
    model = feature_drafter.build(target_model, vocab, weights_sha256(target), seed=cfg.seed)
    del target_model
    # position of each kept token in the cut head (-1: not in it), for the data-only objective's labels
    model.cut = torch.full((model.cfg.vocab_size,), -1, dtype=torch.long)
    model.cut[model.vocab_ids] = torch.arange(len(model.vocab_ids))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    spread = float(torch.cat([s[:64].float() for _, _, s in seqs[:64]]).std())
    groups = batches(seqs, cfg.tokens_per_batch)
    log: list[dict[str, Any]] = []
    t0, step = time.perf_counter(), 0
    bar = tqdm(total=cfg.steps, desc=f"drafter ({cfg.objective})", unit="step", disable=not progress)
    while step < cfg.steps:
        random.shuffle(groups)
        for idx in groups:
            if step >= cfg.steps:
                break
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            for g in opt.param_groups:
                g["lr"] = lr
            loss, parts = step_loss(model, padded(seqs, idx, model.cfg.hidden_size), cfg, spread)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                row = {
                    "step": step,
                    "loss": round(float(loss.detach()), 5),
                    **{k: round(v, 5) for k, v in parts.items()},
                }
                if held and step == cfg.steps:
                    model.eval()
                    row["heldout"] = heldout_accuracy(model, held)
                    model.train()
                row["elapsed_s"] = round(time.perf_counter() - t0, 1)
                log.append(row)
    bar.close()
    del model.cut
    feature_drafter.save(model.eval(), out)
    (out / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    return {"steps": step, "vocab": len(vocab), "sequences": len(seqs), "log": log}
