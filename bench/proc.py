"""Process supervision of the Worker, with and without, at equal steps and data (issue 16, `make proc`).

From a finished `kimi-student worker-e2e` run folder (its trained teacher, KD mix and held-out items), train
the config's student several times, each seed twice:

- with:    the config's process weights (loss weight on tool names, JSON arguments, integration spans and
           each turn's first token, where the student decides to call or to answer);
- without: every assistant token weighed 1 (`process_weights: {}`),

then evaluate each through `eval --runner hf_local` on the first N held-out items and print, per arm, the
mean and spread (sample standard deviation) over seeds of json_args_valid_rate, call accuracy and integration
F1 strict and lax, each seed's figures beside them. Each finished arm is kept in RUN/bench_proc and skipped
on a rerun (an arm interrupted mid-training starts that arm again).

    .venv/bin/python bench/proc.py --run runs/worker-e2e [--seeds 3] [--steps N] [--heldout N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.worker_kd import evaluate, heldout_subset  # noqa: E402
from kimi_student.recipes.toy_e2e import torch_threads  # noqa: E402
from kimi_student.recipes.toy_run import ToyRun  # noqa: E402
from kimi_student.recipes.worker_e2e import CONFIG, kd_path, read_config, teacher_checkpoint, train_model  # noqa: E402

METRICS = ("json_args_valid_rate", "call_accuracy", "integration_f1_strict", "integration_f1_lax")


def arm(a: argparse.Namespace, run: ToyRun, cfg: dict[str, Any], held: Path, name: str, seed: int) -> dict:
    folder = a.run / "bench_proc"
    done = folder / f"{name}_s{seed}.json"
    if done.is_file():
        return json.loads(done.read_text())
    overrides: dict[str, Any] = {"seed": seed}
    if name == "without":
        overrides["process_weights"] = {}
    t0 = time.perf_counter()
    tr = train_model(
        a.config or CONFIG,
        "worker",
        folder / f"{name}_s{seed}",
        teacher=teacher_checkpoint(run),
        kd=kd_path(run),
        max_steps=a.steps,
        overrides=overrides,
        progress=True,
    )
    row = {
        "train_s": round(time.perf_counter() - t0, 1),
        "loss_last": round(tr["loss_last"], 4),
        **evaluate(f"{name}_s{seed}", tr["checkpoint"], held, cfg, folder),
    }
    done.write_text(json.dumps(row, indent=1))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a finished worker-e2e run folder")
    ap.add_argument("--config", type=Path, default=None, help="its config (default: the packaged one)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per arm (0, 1, ...)")
    ap.add_argument("--steps", type=int, default=None, help="student steps (default: the config's)")
    ap.add_argument("--heldout", type=int, default=None, help="the first N held-out items (default: all)")
    a = ap.parse_args()
    run = ToyRun.at(a.run)
    cfg = read_config(a.config or CONFIG)
    (a.run / "bench_proc").mkdir(exist_ok=True)
    held = heldout_subset(run, a.heldout)
    import torch

    print(
        f"cpu: {platform.processor() or platform.machine()}, bf16 {torch.ops.mkldnn._is_mkldnn_bf16_supported()}; "
        f"process weights {cfg['train'].get('process_weights')} vs none, seeds 0..{a.seeds - 1}",
        flush=True,
    )
    rows: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
    with torch_threads(cfg.get("threads")):
        for seed in range(a.seeds):
            for name in rows:
                rows[name].append(arm(a, run, cfg, held, name, seed))
                print(name, seed, json.dumps(rows[name][-1]), flush=True)
    print(f"\n{'arm':8}" + "".join(f"{m[:22]:>30}" for m in METRICS))
    for name, rs in rows.items():
        cells = []
        for m in METRICS:
            v = [r[m] for r in rs if r[m] is not None]  # None: nothing to measure (a run with no call)
            spread = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append((f"{statistics.mean(v):.4f} ± {spread:.4f} (n={len(v)})" if v else "—").rjust(30))
        print(f"{name:8}" + "".join(cells))
        for seed, r in enumerate(rs):
            print(
                f"  s{seed:<5}"
                + "".join(f"{r[m]:>30.4f}" if r[m] is not None else f"{'—':>30}" for m in METRICS)
            )
    (a.run / "bench_proc" / "result.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
