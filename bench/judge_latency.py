"""Latency of a Judge per case (`make bench-judge JUDGE=runs/judge-toy/final`, or its Core ML export in the
MIL executor: `JUDGE=coreml/artifacts/judge RUNNER=coreml`): one held-out single case at a time (batch 1, greedy, as a reviewer's tool would ask), after warm-up; p50 and p95 seconds a case, and the
rule oracle on the same cases in the same run as the baseline (the Judge's cost over the rule it learns).
A case's time includes its ruling under the grammar where the free output is no valid verdict (`judge eval
--ruling grammar`, the default; `--ruling free` times the free decode alone).

Prints the CPU, threads and precision it ran on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contextual_scale import machine_line, write_bench_report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, required=True, help="Judge checkpoint (or Core ML export) folder.")
    ap.add_argument("--runner", default="hf_local", choices=("hf_local", "coreml"))
    ap.add_argument("--data", type=Path, default=Path("data/judge/heldout.jsonl"))
    ap.add_argument("--n", type=int, default=50, help="Cases timed (after --warmup more).")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument(
        "--max-new-tokens", type=int, default=400, help="As `judge eval`'s (a reasoned verdict: ~300)."
    )
    ap.add_argument("--ruling", default="grammar", choices=("grammar", "free"), help="As `judge eval`'s.")
    ap.add_argument(
        "--report", type=Path, help="Also write the figures as a bench report (for the dashboard)."
    )
    args = ap.parse_args()

    import torch

    from kimi_student.arbiter.cases import Candidate, Context, label
    from kimi_student.arbiter.judge_eval import judge_generator, scored_verdict

    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines()]
    cases = [r for r in rows if r.get("mode") == "single"][: args.warmup + args.n]
    if len(cases) < args.warmup + args.n:
        sys.exit(f"{args.data}: {len(cases)} single cases, fewer than --warmup + --n")
    gen = judge_generator(args.runner, args.model, args.max_new_tokens, 1, args.dtype)
    judge_s, oracle_s, new_tokens = [], [], []
    ruled = 0
    for i, r in enumerate(cases):
        t = time.perf_counter()
        out = gen.generate([[{"role": "user", "content": r["prompt"]}]])[0]
        again = args.ruling == "grammar" and scored_verdict(gen, r["prompt"], out.text) != out.text
        dt = time.perf_counter() - t
        ctx, cand = Context(**r["case"]["context"]), Candidate(**r["case"]["candidates"][0])
        t = time.perf_counter()
        label(ctx, cand)
        dto = time.perf_counter() - t
        if i >= args.warmup:
            judge_s.append(dt)
            oracle_s.append(dto)
            new_tokens.append(len(gen.chat.tok(out.text, add_special_tokens=False)["input_ids"]))
            ruled += again

    def p(xs: list[float], q: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]

    how = f"dtype {gen.dtype}" if args.runner == "hf_local" else f"{args.runner} {gen.decoding()}"
    print(machine_line(f"torch threads {torch.get_num_threads()}  {how}"))
    print(
        f"judge {args.model} on {args.n} held-out single cases ({datetime.now().isoformat(timespec='seconds')})"
    )
    print(
        f"  judge : p50 {p(judge_s, 0.5):.3f} s  p95 {p(judge_s, 0.95):.3f} s  max {max(judge_s):.3f} s  "
        f"({statistics.mean(new_tokens):.0f} new tokens a case; {ruled} of {args.n} ruled again under the grammar)"
    )
    print(f"  oracle: p50 {p(oracle_s, 0.5) * 1000:.2f} ms  p95 {p(oracle_s, 0.95) * 1000:.2f} ms")
    print(f"  judge / oracle at p95: {p(judge_s, 0.95) / p(oracle_s, 0.95):.0f}x")
    if args.report:
        summary = {
            "judge_p50_s": p(judge_s, 0.5),
            "judge_p95_s": p(judge_s, 0.95),
            "oracle_p95_s": p(oracle_s, 0.95),
            "judge_over_oracle_p95_ratio": p(judge_s, 0.95) / p(oracle_s, 0.95),
            "new_tokens_mean": statistics.mean(new_tokens),
            "ruled_under_grammar": ruled,
            "cases": args.n,
        }
        write_bench_report(
            args.report,
            "judge_latency",
            summary,
            runner=args.runner,
            how=how,
            model=str(args.model),
            ruling=args.ruling,
        )


if __name__ == "__main__":
    main()
