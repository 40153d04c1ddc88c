"""Speed of the MIL executor on an exported stateful decoder (`decode<N>.mlpackage`: one token a call,
and with `export coreml --chunks` a function per chunk length, KV cache in Core ML states), against the
executor's earlier behaviour, measured in the same run:

- baseline: every KV-cache write (`slice_update`, `scatter_nd`) copies the whole cache, fp16 values are
  rounded and converted by numpy, and numpy's BLAS and torch keep their thread pools as they are;
- ours: a write whose input dies there, and that no live value shares, happens in place; fp16 rounding
  and state conversions use torch's vectorised cast (bit-identical); one BLAS and one torch thread while
  a program runs (two pools on two cores spin against each other).

For each function it prints the cost of a call, per token, and against one-token decoding (c(Q)/c(1):
what prefill and draft verification cost). The rounds alternate the two and the best of each is kept.
Both run the same tokens from a fresh state; the baseline run again at our thread count must give
identical logits (exit 1 otherwise). With free pools a multi-token call's last bits may differ: the BLAS
splits a product of several rows across its threads.

    .venv/bin/kimi-student export coreml --model DIR --shapes 16 --context 1024 --chunks 8,32 --out PKGS
    .venv/bin/python bench/mil_decode.py --package PKGS/decode1024.mlpackage [--calls 8] [--rounds 2]
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
from kimi_student.export.kv_decode import function_q_len  # noqa: E402
from kimi_student.export.mil import MilProgram, dtypes, program  # noqa: E402


@contextmanager
def baseline() -> Iterator[None]:
    """The executor as it was: no in-place cache writes, numpy's fp16 conversions, free thread pools."""
    saved = program.IN_PLACE, dtypes._TORCH_MIN, program.THREADS
    program.IN_PLACE, dtypes._TORCH_MIN, program.THREADS = {}, 1 << 62, None
    try:
        yield
    finally:
        program.IN_PLACE, dtypes._TORCH_MIN, program.THREADS = saved


def run(prog: MilProgram, q: int, tokens: np.ndarray, calls: int) -> tuple[float, np.ndarray]:
    """Seconds per call over `calls` calls of q tokens at successive positions from a fresh state, and
    the last logits."""
    state = prog.new_state()
    t0, out = time.perf_counter(), {}
    for c in range(calls):
        ids = tokens[c * q : (c + 1) * q][None].astype(np.int32)
        out = prog.predict({"input_ids": ids, "position": np.array([c * q], np.int32)}, state)
    return (time.perf_counter() - t0) / calls, next(iter(out.values()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", type=Path, required=True, help="a decode<N>.mlpackage")
    ap.add_argument("--calls", type=int, default=8, help="calls per function and round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    progs = {function_q_len(n, p): p for n, p in MilProgram.load_all(args.package).items()}
    print(
        machine_line(
            f"package: {args.package.name}  query lengths: {sorted(progs)}  precision: fp16 (as fp32)"
        )
    )
    tokens = np.random.default_rng(0).integers(0, 1000, max(progs) * args.calls)
    rows, same = [], True
    for q, prog in sorted(progs.items()):
        best = {"baseline": float("inf"), "ours": float("inf")}
        logits = {}
        run(prog, q, tokens, 1)  # warm-up
        for _ in range(args.rounds):
            with baseline():
                s, logits["baseline"] = run(prog, q, tokens, args.calls)
            best["baseline"] = min(best["baseline"], s)
            s, logits["ours"] = run(prog, q, tokens, args.calls)
            best["ours"] = min(best["ours"], s)
        with baseline():
            program.THREADS = 1
            _, logits["baseline"] = run(prog, q, tokens, args.calls)
        ok = np.array_equal(logits["baseline"], logits["ours"], equal_nan=True)
        same &= ok
        rows.append((q, best["baseline"], best["ours"], ok))
    one = rows[0][2]
    print(
        f"{'Q':>4} {'baseline ms':>12} {'ours ms':>9} {'speed-up':>9} {'ms/token':>9} {'c(Q)/c(1)':>10}  same"
    )
    for q, b, o, ok in rows:
        print(
            f"{q:>4} {b * 1e3:>12.1f} {o * 1e3:>9.1f} {b / o:>8.2f}x {o * 1e3 / q:>9.1f} {o / one:>10.2f}  {ok}"
        )
    print(f"logits identical on every function: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
