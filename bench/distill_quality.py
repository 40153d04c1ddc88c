"""Does KD beat SFT? Teacher SmolLM2-135M-Instruct, a 6-layer student made of its layers, the same
prompts and steps: SFT on the teacher's text (ce_teacher) versus KD (ce_teacher + forward KL on the
teacher's top-20 logprobs, T=1 by default). Held-out: KL(teacher || student) per response token, and top-1
agreement between student and teacher, both measured against the teacher's full logits.

    .venv/bin/python bench/distill_quality.py [--train 64 --heldout 64 --steps 80 --teacher-temperature 0.8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["HF_HUB_OFFLINE"] = "1"


def ks(*args: object) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "kimi_student", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )
    if r.returncode != 0:
        sys.exit(f"{args[0]} failed:\n{r.stdout}\n{r.stderr}")
    print("   ", r.stdout.strip().splitlines()[-1])


def heldout_metrics(student_dir: Path, teacher_dir: Path, kd_path: Path) -> dict[str, float]:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kimi_student.train.examples import ExampleBuilder, load_examples

    tok = AutoTokenizer.from_pretrained(str(teacher_dir))
    ex = load_examples(ExampleBuilder(tok, {}), None, kd_path, system=False)
    teacher = AutoModelForCausalLM.from_pretrained(str(teacher_dir), dtype=torch.float32).eval()
    student = AutoModelForCausalLM.from_pretrained(str(student_dir), dtype=torch.float32).eval()
    kl_sum, agree, n = 0.0, 0, 0
    with torch.no_grad():
        for e in ex:
            ids = torch.from_numpy(e.input_ids)[None]
            lt = teacher(ids).logits[0, e.response_start - 1 : -1].float()
            ls = student(ids).logits[0, e.response_start - 1 : -1].float()
            lp, lq = F.log_softmax(lt, -1), F.log_softmax(ls, -1)
            kl_sum += float((lp.exp() * (lp - lq)).sum())
            agree += int((lt.argmax(-1) == ls.argmax(-1)).sum())
            n += lt.shape[0]
    return {"kl_teacher_student": kl_sum / n, "top1_agreement": agree / n, "tokens": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=64)
    ap.add_argument("--heldout", type=int, default=64)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument(
        "--teacher-temperature",
        type=float,
        default=0.8,
        help="Teacher sampling temperature (default 0.8, as KD data is usually sampled). 0 = greedy: the "
        "SFT targets are then exactly the teacher's top-1 tokens, which top-1 agreement measures.",
    )
    ap.add_argument("--keep", type=Path, help="Keep the work folder here (reruns reuse its teacher answers).")
    ap.add_argument("--temperature", type=float, default=1.0, help="KD temperature (KL is scaled by T^2).")
    ap.add_argument("--kl-weight", type=float, default=1.0)
    ap.add_argument(
        "--ce-weight", type=float, default=1.0, help="Weight of CE on the teacher's text in the KD run."
    )
    a = ap.parse_args()
    import torch

    from kimi_student.backends.embedded import smollm2_folder

    print(
        f"cpu: {platform.processor() or platform.machine()}  torch threads {torch.get_num_threads()}  "
        f"bf16 supported: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}"
    )
    work = a.keep or Path(tempfile.mkdtemp(prefix="distill."))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = a.train + a.heldout
    ks("contextual", "gen", "--n", n * 2, "--seed", 123, "--out", work / "ctx.jsonl")
    rows = [json.loads(x) for x in (work / "ctx.jsonl").read_text().splitlines()[1:]]
    rows = [r for r in rows if r["metadata"]["expected_behaviour"] not in ("no_tool", "decline")][:n]
    tt = a.teacher_temperature
    suffix = "" if tt == 0 else f"_t{tt:g}"  # the teacher's decoding temperature names its answers
    kd_train, kd_heldout = work / f"train_kd{suffix}.jsonl", work / f"heldout_kd{suffix}.jsonl"
    for name, part in (("train", rows[: a.train]), ("heldout", rows[a.train :])):
        # always through kd-mix: its cache answers what the teacher already answered, and a changed
        # prompt set (another --train or --heldout) is never mistaken for the old one
        (work / f"{name}_prompts.jsonl").write_text(
            "".join(json.dumps({"id": r["id"], "prompt": r["prompt"]}) + "\n" for r in part)
        )
        ks(
            "kd-mix",
            "--teacher",
            "smollm2",
            "--prompts",
            work / f"{name}_prompts.jsonl",
            "--out",
            work / f"{name}_kd{suffix}.jsonl",
            "--max-new-tokens",
            a.max_new_tokens,
            "--temperature",
            tt,
            "--top-logprobs",
            20,
            "--no-system",
        )
    print(f"teacher answers: {time.perf_counter() - t0:.0f} s")
    base = {
        "system_prompt": False,
        "lr": 2e-4,
        "warmup_steps": 4,
        "batch_size": 4,
        "max_steps": a.steps,
        "grad_clip": 1.0,
        "seq_curriculum": [{"until_step": None, "seq_len": 256}],
        "checkpoint_every": 0,
        "seed": 0,
        "process_weights": {},
    }
    from kimi_student.models.student import load_spec

    arch = load_spec("worker", "small").arch  # 6 of SmolLM2's 30 layers (worker.yaml)
    import yaml

    results = {}
    for name, loss in (
        ("sft", {"ce_teacher": 1.0}),
        ("kd", {"ce_teacher": a.ce_weight, "kl_forward": a.kl_weight, "temperature": a.temperature}),
    ):
        cfg = work / f"{name}.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "role": "worker",
                    "train": {**base, "loss": loss},
                    "sizes": {
                        "small": {"arch": arch, "init": {"kind": "layer_subset", "teacher": "smollm2"}}
                    },
                }
            )
        )
        t = time.perf_counter()
        key = hashlib.sha256(cfg.read_bytes() + suffix.encode()).hexdigest()[:10]
        run = work / f"{name}-{key}"  # reuse an identical run
        if not (run / "final" / "config.json").exists():
            ks("train", "--config", cfg, "--size", "small", "--kd", kd_train, "--out", run)
        results[name] = heldout_metrics(run / "final", smollm2_folder(), kd_heldout)
        results[name]["train_s"] = time.perf_counter() - t
    init = work / "init"
    if not (init / "config.json").exists():
        from kimi_student.models.student import build_student, load_spec, save_checkpoint

        spec = load_spec("worker", "small")
        save_checkpoint(build_student(spec), smollm2_folder(), init)
    results["init"] = heldout_metrics(init, smollm2_folder(), kd_heldout)
    print(
        f"{'student':<8} {'KL(teacher||student)':>22} {'top-1 agreement':>16}   (held-out: {a.heldout} prompts, "
        f"{results['kd']['tokens']} tokens; {a.steps} steps x 4 x 256)"
    )
    for name in ("init", "sft", "kd"):
        r = results[name]
        print(f"{name:<8} {r['kl_teacher_student']:>22.4f} {r['top1_agreement']:>16.4f}")
    s, k = results["sft"], results["kd"]
    print(
        f"KD vs SFT: KL ratio {k['kl_teacher_student'] / s['kl_teacher_student']:.3f} (lower is better), "
        f"top-1 {k['top1_agreement'] - s['top1_agreement']:+.4f}; "
        f"KD {'wins' if k['kl_teacher_student'] < s['kl_teacher_student'] and k['top1_agreement'] > s['top1_agreement'] else 'does NOT win'}"
    )
    print(f"total {time.perf_counter() - t0:.0f} s; work folder {work}")


if __name__ == "__main__":
    main()
