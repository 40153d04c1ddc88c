"""KD against SFT for the Worker student, at equal steps and data (issue 13, "Distilled, not only
fine-tuned"): from a finished `kimi-student worker-e2e` run folder (its trained teacher, its KD mix and its
held-out items), train the same student (the config's init, the same seed, steps, learning rate and rows)
twice:

- SFT: cross-entropy on the gold text of exactly the items the teacher scored (`ce_ground_truth`);
- KD: the KD mix of those items: the same gold text (`ce_teacher`) plus the teacher's top-k
  distribution at every assistant position (`kl_forward`, sparse);

then evaluate both through `eval --runner hf_local` on the run's held-out items, and the teacher beside
them, and print held-out integration F1 lax/strict, call accuracy, json_args_valid and every gate.
The KD run of worker-e2e itself is retrained here, so the two arms share one machine state.

    .venv/bin/python bench/worker_kd.py --run runs/worker-e2e [--steps N] [--heldout N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kimi_student.eval.harness import run_eval  # noqa: E402
from kimi_student.eval.report import EvalPaths  # noqa: E402
from kimi_student.eval.runners.base import RunnerSpec  # noqa: E402
from kimi_student.jsonl import read_jsonl, write_jsonl  # noqa: E402
from kimi_student.recipes.toy_e2e import torch_threads  # noqa: E402
from kimi_student.recipes.toy_run import ToyRun  # noqa: E402
from kimi_student.recipes.worker_e2e import (  # noqa: E402
    CONFIG,
    eval_options,
    kd_path,
    read_config,
    teacher_checkpoint,
    train_model,
)

METRICS = (
    "integration_f1_lax",
    "integration_f1_strict",
    "call_accuracy",
    "json_args_valid_rate",
    "hallucination_rate",
    "call_sequence_parity",
    "fixture_hit_rate",
    "privacy_ok_rate",
)


def scored_items(run: ToyRun, out: Path) -> int:
    """The gold items the KD mix holds, as a contextual dataset (header + those items, in file order)."""
    ids = {row["id"] for _, row in read_jsonl(kd_path(run)) if not row.get("__header__")}
    rows = [row for _, row in read_jsonl(run.train_jsonl) if row.get("__header__") or row["id"] in ids]
    write_jsonl(out, rows)
    return len(rows) - 1


def heldout_subset(run: ToyRun, n: int | None) -> Path:
    """The first `n` held-out items, beside the run's (its header names their fixtures folder there)."""
    if not n:
        return run.heldout_jsonl
    out = run.heldout_jsonl.with_name(f"heldout_first{n}.jsonl")
    write_jsonl(out, [row for _, row in read_jsonl(run.heldout_jsonl)][: n + 1])
    return out


def evaluate(name: str, checkpoint: str, held: Path, cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
    opts = eval_options(checkpoint, cfg["decode"])
    paths = EvalPaths(folder / f"eval_{name}.jsonl", folder / f"eval_{name}.json")
    t0 = time.perf_counter()
    rep = run_eval(held, RunnerSpec("hf_local", None, opts), paths, fresh=True, progress=True)
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        **{m: rep["summary"].get(m) for m in METRICS},
        "gates_passed": rep["passed"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a finished worker-e2e run folder")
    ap.add_argument("--config", type=Path, default=None, help="its config (default: the packaged one)")
    ap.add_argument("--steps", type=int, default=None, help="student steps (default: the config's)")
    ap.add_argument("--heldout", type=int, default=None, help="the first N held-out items (default: all)")
    a = ap.parse_args()
    run = ToyRun.at(a.run)
    config = a.config or CONFIG
    cfg = read_config(config)
    teacher = teacher_checkpoint(run)
    folder = a.run / "bench_kd"
    folder.mkdir(exist_ok=True)
    sft_data = folder / "sft_items.jsonl"
    n = scored_items(run, sft_data)
    held = heldout_subset(run, a.heldout)
    import torch

    print(
        f"cpu: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"bf16 {torch.ops.mkldnn._is_mkldnn_bf16_supported()}; {n} items each arm",
        flush=True,
    )
    rows: dict[str, dict[str, Any]] = {}
    with torch_threads(cfg.get("threads")):
        for arm in ("sft", "kd"):
            kw = {"data": sft_data} if arm == "sft" else {"kd": kd_path(run)}
            t0 = time.perf_counter()
            tr = train_model(
                config,
                "worker",
                folder / arm,
                teacher=teacher,
                max_steps=a.steps,
                **kw,
                overrides={"loss": {"ce_ground_truth": 1.0}} if arm == "sft" else None,
            )
            rows[arm] = {
                "train_s": round(time.perf_counter() - t0, 1),
                "loss_last": round(tr["loss_last"], 4),
                **evaluate(arm, tr["checkpoint"], held, cfg, folder),
            }
            print(arm, json.dumps(rows[arm]), flush=True)
        rows["teacher"] = evaluate("teacher", str(teacher), held, cfg, folder)
    print(f"\n{'':8}" + "".join(f"{m[:22]:>24}" for m in METRICS))
    for arm, r in rows.items():
        print(f"{arm:8}" + "".join(f"{r[m]:>24.4f}" if r[m] is not None else f"{'—':>24}" for m in METRICS))
    (folder / "result.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
