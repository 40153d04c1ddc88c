"""The cost of a training step with the LM head at every position (the trainer before this change: full
logits, then the loss positions picked out of them) against the head at the loss positions only
(`trainer.target_logits`), measured in one run on the same model, batches and precision.

Batches are the trainer's own: `contextual gen` items as tool-loop conversations (ExampleBuilder, prompt
wrapper `request`, loss on the assistant turns only), packed into `--batch-size` rows of `--seq-len`
tokens. The model has SmolLM2-135M's shape with `--layers` decoder layers (30: the 135M teacher; 12: the
worker), random weights (the cost does not depend on them). Each step is forward, CE at the loss positions,
backward and AdamW; the paths alternate for `--rounds` rounds and the median step of each is kept (the
machine may be shared). Prints the CPU, the precision (bf16 autocast where oneDNN runs it natively, as
the trainer's `auto`), the share of positions that carry a loss, both step times and the ratio, and the
largest difference of the loss between the paths (the same numbers up to float rounding).

    .venv/bin/python bench/train_head.py [--layers 30] [--seq-len 1024] [--batch-size 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contextual_scale import machine_line, run  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"


def batches(n_items: int, seq_len: int, batch_size: int, count: int) -> list[dict[str, Any]]:
    """`count` packed micro-batches of the trainer, from `n_items` generated items."""
    import torch
    from transformers import AutoTokenizer

    from kimi_student.backends.hf import resolve_teacher_folder
    from kimi_student.train.examples import ExampleBuilder, ExampleStream, load_examples, pack

    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "train.jsonl"
        run("contextual", "gen", "--n", str(n_items), "--split", "train", "--seed", "0", "--out", str(data))
        tok = AutoTokenizer.from_pretrained(str(resolve_teacher_folder("smollm2")))
        examples = load_examples(ExampleBuilder(tok, {}), data, None, system=False)
    stream = ExampleStream(len(examples), 0)
    out = []
    for _ in range(count):
        b = pack(examples, stream, seq_len, batch_size)
        out.append({k: torch.from_numpy(v) for k, v in b.items()})
    return out


def model(layers: int) -> Any:
    """SmolLM2-135M's shape (the worker-e2e teacher's arch) with `layers` layers, random weights."""
    import dataclasses

    import torch
    from transformers import LlamaForCausalLM

    from kimi_student.models.student import llama_config, load_spec

    spec = load_spec("worker_e2e", "teacher")
    spec = dataclasses.replace(spec, arch={**spec.arch, "num_hidden_layers": layers})
    torch.manual_seed(0)
    return LlamaForCausalLM(llama_config(spec)).train()


def step(m: Any, opt: Any, batch: dict[str, Any], head_everywhere: bool, bf16: bool) -> tuple[float, float]:
    """One training step: (seconds, loss)."""
    import torch

    from kimi_student.train import losses as L
    from kimi_student.train.trainer import packed_inputs, target_logits

    t = time.perf_counter()
    at = L.loss_positions(batch["weights"])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if head_everywhere:  # the trainer before: logits everywhere, the loss positions picked out
            logits = m(**packed_inputs(batch)).logits.float()[:, :-1][at].unsqueeze(0)
        else:
            logits = target_logits(m, batch, at).float()
        sel = L.at_loss_positions(batch, at)
        loss = L.cross_entropy(logits, sel["input_ids"], sel["weights"])
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t, float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--items", type=int, default=200)
    args = ap.parse_args()
    import torch

    from kimi_student.backends.hf import cpu_has_bf16

    bf16 = cpu_has_bf16()
    data = batches(args.items, args.seq_len, args.batch_size, args.rounds + 1)
    share = float(sum(int((b["weights"][:, 1:] > 0).sum()) for b in data)) / sum(
        b["weights"][:, 1:].numel() for b in data
    )
    print(
        machine_line(f"torch threads: {torch.get_num_threads()}  precision: {'bf16' if bf16 else 'fp32'}  ")
    )
    print(
        f"model: SmolLM2-135M shape, {args.layers} layers; rows {args.batch_size} x {args.seq_len}; "
        f"positions with a loss: {share:.1%}"
    )
    # Two copies of one model, one per path, so neither path's AdamW state runs ahead of the other's.
    models = {p: model(args.layers) for p in ("everywhere", "targets")}
    opts = {p: torch.optim.AdamW(models[p].parameters(), lr=1e-5) for p in models}
    times: dict[str, list[float]] = {p: [] for p in models}
    losses: dict[str, list[float]] = {p: [] for p in models}
    for i, batch in enumerate(data):
        for p in ("everywhere", "targets") if i % 2 else ("targets", "everywhere"):
            dt, loss = step(models[p], opts[p], batch, p == "everywhere", bf16)
            if i:  # the first round warms up
                times[p].append(dt)
                losses[p].append(loss)
    a, b = statistics.median(times["everywhere"]), statistics.median(times["targets"])
    diff = max(abs(x - y) for x, y in zip(losses["everywhere"], losses["targets"], strict=True))
    print(json.dumps({"head_everywhere_s": round(a, 3), "head_at_targets_s": round(b, 3)}))
    print(
        f"step: head at every position {a:.2f} s, at the loss positions {b:.2f} s: {a / b:.2f}x faster; "
        f"largest loss difference {diff:.2e}"
    )


if __name__ == "__main__":
    main()
