"""What quantization costs the Worker, and what quantization-aware training buys back (issue 16).

From a trained Worker checkpoint and the config that trained it, seven Core ML packages of the same student,
each evaluated through `eval --runner coreml` (its stateful decoder in the MIL executor) on the first N
held-out items:

- fp16:     FP16 weights (the reference: no weight quantization);
- int8_ptq, int4_ptq: the checkpoint quantized at export (post-training quantization);
- int8_qat, int4_qat: the checkpoint fine-tuned `--steps` more steps with `train.qat` on the same scheme
  (forward and backward on the weights the package will hold), then exported with it;
- int4emb8_ptq, int4emb8_qat: the same on INT4 with the embedding and output head at INT8.

With `--distill ITEMS`, the fine-tuning is self-distillation: on conversations the Worker never saw, towards
the full-precision Worker's own distribution (forward KL), not CE on the training set it has memorized.
With `--control`, also `int4_ft`: the same fine-tuning without QAT, exported INT4: whether QAT's gain is the
grid's or just the extra steps'. Prints package size, integration F1 lax/strict, call accuracy and
json_args_valid for each, and the share of 4-bit PTQ's F1 loss that QAT recovers. Every stage is kept in
`--out` and skipped when done (training and evaluation resume where they stopped).

    .venv/bin/python bench/qat.py --model RUN/teacher/final --config CONFIG.yaml --size teacher \\
        --data RUN/data/train.jsonl --heldout RUN/data/heldout.jsonl --items 60 --out /tmp/qat
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
from kimi_student.eval.runners.options import RunnerOptions  # noqa: E402
from kimi_student.jsonl import read_jsonl, write_jsonl  # noqa: E402

METRICS = ("integration_f1_lax", "integration_f1_strict", "call_accuracy", "json_args_valid_rate")


def finetune_spec(
    config: Path,
    size: str,
    model: Path,
    lr: float,
    steps: int,
    qat: str | None,
    distill: bool,
    grad_accum: int | None = None,
) -> Any:
    """The spec of `steps` more steps of the Worker `model` at a constant `lr`, QAT on `qat` weights or none:
    `train --init-from`. `distill`: towards the full-precision Worker's distribution (kl_forward, the Worker as
    in-process teacher), not CE on the data (bench/qat_sweep.py trains the same spec on a GPU)."""
    from kimi_student.models.student import continue_from, load_spec

    spec = continue_from(load_spec(config, size), model)
    spec.train = {
        **spec.train,
        "lr": lr,
        "min_lr_ratio": 1.0,
        "warmup_steps": 0,
        "max_steps": steps,
        "grad_accum": grad_accum or spec.train.get("grad_accum", 1),  # None: the config's
        "checkpoint_every": 20,  # resumable
        "loss": {"kl_forward": 1.0, "temperature": 1.0} if distill else {"ce_ground_truth": 1.0},
        "qat": {"weights": qat} if qat else None,
    }
    return spec


def finetune(a: argparse.Namespace, name: str, qat: str | None) -> Path:
    """`--steps` more steps of the Worker on its training data, with QAT on `qat` weights or without."""
    from kimi_student.train.trainer import train

    run = a.out / name
    if (run / "final" / "model.safetensors").is_file():
        return run / "final"
    # --distill: the full-precision Worker is the teacher (its whole distribution, not the argmax of gold
    # text it has memorized) on conversations it never trained on
    spec = finetune_spec(a.config, a.size, a.model, qat_lr(a, qat), a.steps, qat, bool(a.distill))
    data, teacher = (a.distill, str(a.model)) if a.distill else (a.data, None)
    return Path(train(spec, run, data=str(data), teacher=teacher, precision="auto", progress=True)["final"])


def qat_lr(a: argparse.Namespace, qat: str | None) -> float:
    """`--lr` is the 4-bit grids'; INT8's is scaled down by its finer step (7/127 of INT4's) unless
    `--int8-lr`. Adam moves every weight about lr a step whatever its gradient; on a grid that costs almost
    nothing that move is drift, not repair (INT8 QAT at 1e-5 changed 3 of 60 outputs, 2 for the worse)."""
    from kimi_student.export.quant import scheme

    if qat is None or scheme(qat).bits != 8:
        return a.lr
    return a.int8_lr if a.int8_lr is not None else a.lr * scheme("int4").qmax / scheme(qat).qmax


def export(a: argparse.Namespace, name: str, checkpoint: Path, weights: str) -> Path:
    from kimi_student.export.coreml import export_coreml

    folder = a.out / f"coreml_{name}"
    if not (folder / "manifest.json").is_file():
        export_coreml(
            checkpoint, folder, [a.context], weights=weights, chunks=[32], sequence=False
        )  # the decoder alone: all `--runner coreml` reads
    return folder


def evaluate(a: argparse.Namespace, name: str, package: Path, held: Path) -> dict[str, Any]:
    opts = RunnerOptions(
        model=str(package), prompt_wrapper="request", max_turns=4, max_new_tokens=160, batch_size=1
    )
    paths = EvalPaths(a.out / f"eval_{name}.jsonl", a.out / f"eval_{name}.json")
    t0 = time.perf_counter()
    if paths.report.is_file():
        rep = json.loads(paths.report.read_text())
    else:
        rep = run_eval(held, RunnerSpec("coreml", None, opts), paths, workers=a.workers, progress=True)
    man = json.loads((package / "manifest.json").read_text())
    return {
        "size_mb": round(sum(p["size_bytes"] for p in man["packages"]) / 1e6, 2),
        "eval_s": round(time.perf_counter() - t0, 1),
        "items": rep["summary"]["items"],
        "errors": rep["summary"]["error_items"],
        **{m: rep["summary"].get(m) for m in METRICS},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="the trained Worker (an HF folder)")
    ap.add_argument("--config", type=Path, required=True, help="the config that trained it")
    ap.add_argument("--size", required=True, help="its size in that config")
    ap.add_argument("--data", type=Path, required=True, help="its training items (contextual final)")
    ap.add_argument(
        "--distill",
        type=Path,
        default=None,
        help="fine-tune on these items (ones it never trained on: `contextual gen --seed` another seed) "
        "towards the full-precision Worker's distribution (kl_forward, the Worker as in-process teacher) "
        "instead of CE on --data",
    )
    ap.add_argument("--heldout", type=Path, required=True, help="held-out items (their fixtures beside)")
    ap.add_argument("--items", type=int, default=60, help="the first N held-out items")
    ap.add_argument("--steps", type=int, default=60, help="QAT fine-tuning steps")
    ap.add_argument("--lr", type=float, default=3e-5, help="constant learning rate of the fine-tuning")
    ap.add_argument(
        "--int8-lr", type=float, default=None, help="INT8 QAT's learning rate (default: --lr x 7/127)"
    )
    ap.add_argument("--context", type=int, default=1024, help="the decoder's context")
    ap.add_argument("--workers", type=int, default=2, help="eval worker processes")
    ap.add_argument("--control", action="store_true", help="also fine-tune without QAT, export INT4")
    ap.add_argument(
        "--arms",
        default=None,
        help="these arms only, in this order (e.g. fp16,int4emb8_ptq,int4emb8_qat)",
    )
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    import torch

    print(
        f"cpu: {platform.processor() or platform.machine()}, bf16 {torch.ops.mkldnn._is_mkldnn_bf16_supported()}, "
        f"{os.cpu_count()} cores; {a.items} held-out items, {a.steps} fine-tuning steps at lr {a.lr} "
        f"(INT8: {qat_lr(a, 'int8'):.3g})",
        flush=True,
    )
    held = a.out / f"heldout_first{a.items}.jsonl"
    write_jsonl(held, [row for _, row in read_jsonl(a.heldout)][: a.items + 1])
    fixtures = a.heldout.parent / json.loads(a.heldout.open().readline())["fixtures_dir"]
    link = a.out / fixtures.name
    if not link.exists():
        link.symlink_to(fixtures.resolve(), target_is_directory=True)
    arms = [("fp16", None, "fp16"), ("int8_ptq", None, "int8"), ("int4_ptq", None, "int4")]
    arms += [("int8_qat", "int8", "int8"), ("int4_qat", "int4", "int4")]
    arms += [("int4emb8_ptq", None, "int4emb8"), ("int4emb8_qat", "int4emb8", "int4emb8")]
    if a.control:
        arms.append(("int4_ft", "", "int4"))
    if a.arms:
        by_name = {arm[0]: arm for arm in arms}
        unknown = sorted(set(a.arms.split(",")) - set(by_name))
        if unknown:
            ap.error(f"--arms: unknown {', '.join(unknown)} (known: {', '.join(by_name)})")
        arms = [by_name[n] for n in a.arms.split(",")]
    done = json.loads((a.out / "result.json").read_text()) if (a.out / "result.json").is_file() else {}
    rows: dict[str, dict[str, Any]] = dict(done)  # arms measured by an earlier run of the same --out
    for name, qat, weights in arms:
        t0 = time.perf_counter()
        ckpt = a.model if qat is None else finetune(a, f"ft_{qat or 'none'}", qat or None)
        package = export(a, name, ckpt, weights)
        rows[name] = {"prepare_s": round(time.perf_counter() - t0, 1), **evaluate(a, name, package, held)}
        print(name, json.dumps(rows[name]), flush=True)
        (a.out / "result.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{'':14}{'MB':>8}" + "".join(f"{m[:22]:>24}" for m in METRICS))
    for name, r in rows.items():
        print(
            f"{name:14}{r['size_mb']:>8.1f}"
            + "".join(f"{r[m]:>24.4f}" if r[m] is not None else f"{'—':>24}" for m in METRICS)
        )  # None: nothing to measure (no call made)
    for bits in ("int8", "int4", "int4emb8"):
        if not {"fp16", f"{bits}_ptq", f"{bits}_qat"} <= set(rows):
            continue
        for m in ("integration_f1_lax", "integration_f1_strict"):
            lost = rows["fp16"][m] - rows[f"{bits}_ptq"][m]
            back = rows[f"{bits}_qat"][m] - rows[f"{bits}_ptq"][m]
            share = f"{back / lost:.0%} recovered" if lost > 0 else "PTQ lost nothing"
            print(f"{bits} {m}: PTQ loses {lost:+.4f}, QAT {back:+.4f} over PTQ ({share})")


if __name__ == "__main__":
    main()
