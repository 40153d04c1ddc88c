"""Partial fine-tuning: training tokens/s of SmolLM2-135M (all 30 layers, as shipped) on Judge rows with
`trainable_layers: N` (the top N layers train; the embeddings, the tied head and the layers below are
frozen and get no backward) against every weight training, in one run on this machine.

Rows: `judge data`'s audit target (a small set made here), packed whole into one 2,048-token row a step,
cross-entropy on the targets (the Judge recipe's settings, configs and Makefile `judge_train`). Each setting
trains in its own process, one after the other; tokens/s count from the end of step 1 to the end of the run.
Prints the CPU and the precision it ran on, each setting's tokens/s and its ratio to every weight training.

    .venv/bin/python bench/partial_finetune.py [--steps 5] [--layers 15,10]      (make bench-partial)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"

from bench.train_throughput import cpu_model, ks, rate_from_log  # noqa: E402


def config(work: Path, steps: int, trainable: int | None) -> Path:
    import yaml

    arch = {  # SmolLM2-135M's own shape: layer_subset copies every layer
        "hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3,
        "num_hidden_layers": 30, "max_position_embeddings": 2048, "vocab_size": 49152,
        "rope_theta": 100000.0, "tie_word_embeddings": True,
    }  # fmt: skip
    train = {
        "system_prompt": False,
        "lr": 3e-4,
        "warmup_steps": 1,
        "batch_size": 1,
        "max_steps": steps,
        "grad_clip": 1.0,
        "seq_curriculum": [{"until_step": None, "seq_len": 2048}],
        "pack_truncate": False,
        "loss": {"ce_ground_truth": 1.0},
        "checkpoint_every": 0,
        "seed": 0,
    }
    if trainable is not None:
        train["trainable_layers"] = trainable
    cfg = work / f"top{trainable}.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "role": "judge",
                "tokenizer": "smollm2",
                "train": train,
                "sizes": {"smollm2": {"arch": arch, "init": {"kind": "layer_subset", "teacher": "smollm2"}}},
            }
        )
    )
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--layers", default="15,10", help="trainable_layers settings to compare with all 30")
    args = ap.parse_args()
    from kimi_student.train.trainer import pick_precision

    precision = pick_precision("auto")
    print(
        f"cpu: {cpu_model()}, {len(os.sched_getaffinity(0))} cpus; precision {precision}; {args.steps} steps"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # a set this small fails judge data's balance checks (exit 1); its files are whole
        subprocess.run(
            [sys.executable, "-m", "kimi_student", "judge", "data", "--out", str(work / "data"), "--train", "200",
             "--heldout", "20", "--seed", "0"],
            cwd=ROOT, capture_output=True, check=False,
        )  # fmt: skip
        rates: dict[str, float] = {}
        for top in [None, *(int(x) for x in args.layers.split(","))]:
            run = work / f"run{top}"
            shutil.rmtree(run, ignore_errors=True)
            ks(
                "train", "--config", config(work, args.steps, top), "--size", "smollm2",
                "--data", work / "data" / "train_audit_sft.jsonl", "--out", run, "--precision", precision,
            )  # fmt: skip
            name = "all 30 layers" if top is None else f"top {top} of 30"
            rates[name] = rate_from_log(run)
            base = rates["all 30 layers"]
            print(f"{name:>14}: {rates[name]:7.1f} tokens/s  {rates[name] / base:.2f}x", flush=True)


if __name__ == "__main__":
    main()
