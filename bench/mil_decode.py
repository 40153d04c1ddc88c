"""Speed of the MIL executor on an exported stateful decoder (`decode<N>.mlpackage`, one token a step,
KV cache in Core ML states), against the executor's earlier behaviour, measured in the same run:

- baseline: every `slice_update` copies its input (each layer's KV-cache write copied the whole cache),
  and fp16 values are rounded and converted by numpy;
- ours: a `slice_update` whose input dies there, and that no live value shares, writes in place; fp16
  rounding and state conversions use torch's vectorised cast (bit-identical).

Both run the same token sequence from a fresh state; their logits must be identical (exit 1 otherwise).
The rounds alternate the two and the best of each is kept (the machine may be shared).

    .venv/bin/kimi-student export coreml --model DIR --shapes 512 --context 1024 --out PKGS
    .venv/bin/python bench/mil_decode.py --package PKGS/decode1024.mlpackage [--steps 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contextual_scale import ROOT, machine_line  # noqa: E402

sys.path.insert(0, str(ROOT))
from kimi_student.export.mil import MilProgram, dtypes, program  # noqa: E402


@contextmanager
def baseline() -> Iterator[None]:
    """The executor as it was: no in-place slice_update, numpy's fp16 conversions."""
    reuses, least = program.IN_PLACE, dtypes._TORCH_MIN
    program.IN_PLACE, dtypes._TORCH_MIN = {}, 1 << 62
    try:
        yield
    finally:
        program.IN_PLACE, dtypes._TORCH_MIN = reuses, least


def decode(prog: MilProgram, tokens: list[int]) -> tuple[float, np.ndarray]:
    """Seconds per step over `tokens` fed one by one from a fresh state, and the last logits."""
    state = prog.new_state()
    t0, out = time.perf_counter(), {}
    for pos, tok in enumerate(tokens):
        out = prog.predict(
            {"input_ids": np.array([[tok]], np.int32), "position": np.array([pos], np.int32)}, state
        )
    return (time.perf_counter() - t0) / len(tokens), next(iter(out.values()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", type=Path, required=True, help="a decode<N>.mlpackage")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    prog = MilProgram.load(args.package)
    if prog.input_names != ["input_ids", "position"] or not prog.state_names:
        print(f"{args.package}: not a stateful decoder (inputs {prog.input_names})", file=sys.stderr)
        return 2
    print(
        machine_line(f"package: {args.package.name}  states: {prog.state_names}  precision: fp16 (as fp32)")
    )
    tokens = [int(t) for t in np.random.default_rng(0).integers(0, 1000, args.steps)]
    best = {"baseline": float("inf"), "ours": float("inf")}
    logits: dict[str, np.ndarray] = {}
    decode(prog, tokens[:2])  # warm-up
    for _ in range(args.rounds):
        with baseline():
            s, logits["baseline"] = decode(prog, tokens)
        best["baseline"] = min(best["baseline"], s)
        s, logits["ours"] = decode(prog, tokens)
        best["ours"] = min(best["ours"], s)
    same = np.array_equal(logits["baseline"], logits["ours"], equal_nan=True)
    print(f"{'path':<10} {'ms/step':>9} {'tokens/s':>9}")
    for name, s in best.items():
        print(f"{name:<10} {s * 1e3:>9.1f} {1 / s:>9.2f}")
    print(f"speed-up ours/baseline: {best['baseline'] / best['ours']:.2f}x  logits identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
