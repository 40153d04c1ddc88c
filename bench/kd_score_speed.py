"""Speed of `kd-mix --score-gold` (teacher forcing): tokens/s of the teacher's scoring forward on the gold
tool-loop conversations of a generated contextual dataset, with the embedded SmolLM2-135M teacher.

The baseline, measured in the same run on the same sequences: one plain forward per conversation with the
full logits (what a direct implementation does), then the top-k at the kept positions. Ours: padded
batches of B sequences, only the kept rows through the LM head. Precision: bf16 autocast where the CPU has
bf16 (`torch.ops.mkldnn._is_mkldnn_bf16_supported()`), else fp32, chosen at run time and printed.

    .venv/bin/python bench/kd_score_speed.py [--n 20] [--batch 1 4 8]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contextual_scale import ROOT, machine_line  # same folder


def _baseline(teacher, requests) -> float:  # noqa: ANN001
    """Seconds for one full-logits forward per sequence, then the top-k at the kept positions."""
    import torch

    k = requests[0].decoding.top_logprobs
    t0 = time.perf_counter()
    for r in requests:
        f = r.forced
        bf16 = f.precision == "bf16"
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = teacher.model(torch.tensor([f.token_ids]), use_cache=False).logits[0]
            before = torch.tensor(f.positions()) - 1
            torch.log_softmax(logits[before].float(), dim=-1).topk(k, dim=-1)
    return time.perf_counter() - t0


def _ours(teacher, requests, batch: int) -> float:  # noqa: ANN001
    order = sorted(requests, key=lambda r: len(r.forced.token_ids))  # as kd_mix._score batches them
    t0 = time.perf_counter()
    for i in range(0, len(order), batch):
        teacher.score(order[i : i + batch])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from kimi_student.teachers.hf_local import HFTeacher, scoring_precision
    from kimi_student.train.teacher_forced import forced_requests

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "c.jsonl"
        gen = ["contextual", "gen", "--n", str(args.n), "--seed", "3", "--out", str(data)]
        subprocess.run(
            [sys.executable, "-m", "kimi_student", *gen], check=True, cwd=ROOT, capture_output=True
        )
        teacher = HFTeacher("smollm2", top_k=20)
        precision = scoring_precision("auto")
        reqs = forced_requests(data, teacher.tokenizer, "request", 20, precision)
    name = "fp32" if precision == "no" else precision
    tokens = sum(len(r.forced.token_ids) for r in reqs)
    kept = sum(len(r.forced.positions()) for r in reqs)
    print(machine_line(f"precision: {name}  "))
    print(f"{len(reqs)} conversations, {tokens} tokens, {kept} kept (assistant turns), teacher {teacher.id}")
    _ours(teacher, reqs[:2], 2)  # warm-up: first-call allocations out of the timings
    base = _baseline(teacher, reqs)
    print(f"baseline (1 full-logits forward each): {tokens / base:7.1f} tokens/s  {base:6.1f} s")
    for b in args.batch:
        took = _ours(teacher, reqs, b)
        print(
            f"score, batch {b}:                      {tokens / took:7.1f} tokens/s  {took:6.1f} s  x{base / took:.2f}"
        )


if __name__ == "__main__":
    main()
