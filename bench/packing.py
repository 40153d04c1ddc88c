"""How full a training run's rows are when packing never cuts an example (`pack_truncate: false`, the Judge's
recipe): the seeded permutation read in turn (the baseline) against the same permutation in fill order
(`train.examples.fill_order`, what the trainer reads), over the rows a run takes. Counts, not times: the share
of row positions that hold no example, and how many examples of each kind (a record id's prefix) the rows
carry. `make bench-packing BENCH_PACKING_ARGS="--data data/judge/train_audit_sft.jsonl"`.

Prints the CPU it ran on and the seconds the fill order took to plan (once an epoch).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contextual_scale import machine_line  # noqa: E402

from kimi_student.train.examples import ExampleStream  # noqa: E402


def _kind(example_id: str) -> str:
    """`train-line-drill-000012` -> `line-drill`; a pair's two orders -> `pair`."""
    return "pair" if "-pair-" in example_id else re.sub(r"^train-|-\d+$", "", example_id)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--data", type=Path, required=True, help="An SFT file (judge data's train_audit_sft.jsonl)."
    )
    ap.add_argument("--config", default="judge", help="The student config whose tokenizer builds the rows.")
    ap.add_argument("--size", default="smollm2")
    ap.add_argument("--rows", type=int, default=150, help="Rows packed (one a step in the smollm2 recipe).")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import numpy as np
    from transformers import AutoTokenizer

    from kimi_student.models.student import load_spec, resolve_tokenizer_folder
    from kimi_student.train.examples import ExampleBuilder, load_examples, pack

    spec = load_spec(args.config, args.size)
    tok = AutoTokenizer.from_pretrained(str(resolve_tokenizer_folder(spec.tokenizer)))
    examples = load_examples(ExampleBuilder(tok, {}), args.data, None, system=False)
    lengths = [len(e.input_ids) for e in examples]
    print(machine_line())
    print(
        f"{args.data}: {len(examples)} examples, {args.rows} rows of {args.seq_len} tokens, seed {args.seed}"
    )
    results = {}
    for name, fill in (("permutation", {}), ("fill order", {"lengths": lengths, "seq_len": args.seq_len})):
        t0 = time.perf_counter()
        stream = _Recording(len(examples), args.seed, **fill)
        plan_s = time.perf_counter() - t0
        padding = 0
        for _ in range(args.rows):
            b = pack(examples, stream, args.seq_len, 1, truncate=False)
            padding += int(np.count_nonzero(b["source"] == 0))
        kinds = Counter(_kind(examples[i].id) for i in stream.taken)
        results[name] = (padding / (args.rows * args.seq_len), kinds, plan_s)
    base = sum(results["permutation"][1].values())
    for name, (pad, kinds, plan_s) in results.items():
        shown = "  ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        print(
            f"{name:12s} padding {pad:.3f}  examples {sum(kinds.values())} ({sum(kinds.values()) / base:.2f}x)  "
            f"{shown}  planned in {plan_s:.2f} s"
        )


class _Recording(ExampleStream):
    """The trainer's stream, keeping every index it hands out."""

    def __init__(self, *a, **k) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **k)
        self.taken: list[int] = []

    def next(self) -> int:
        idx = super().next()
        self.taken.append(idx)
        return idx


if __name__ == "__main__":
    main()
