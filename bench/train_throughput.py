"""Training throughput: our trainer versus TRL's GKDTrainer on the same student, teacher and data,
measured in one run on this machine (target: ours >= 1.5x).

Student: 6 of SmolLM2-135M-Instruct's 30 layers (~50M). Teacher: SmolLM2-135M-Instruct. Data: the
teacher's answers to contextual prompts (a KD mix with top-20 logprobs). Loss: generalised JSD
(beta 0.5, T 1) on the teacher's distribution, batch 4 x 256 tokens, the same steps for every run.
- TRL GKDTrainer (lmbda 0: off-policy on the data; the teacher runs every step, full vocabulary;
  activation checkpointing off, which TRL enables by default, so both sides do the same work);
- ours, teacher in the loop (full-vocabulary JSD: the same work as TRL);
- ours, from the KD mix's top-20 logprobs (sparse JSD: no teacher forward pass).
Tokens/s count from the end of step 1 to the end of the run (start-up excluded for both).
Also prints the top-k shard bytes per token against full fp16 logits.

    .venv/bin/python bench/train_throughput.py [--steps 12]   (needs `pip install trl==1.16.0`)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["HF_HUB_OFFLINE"] = "1"
BATCH, SEQ = 4, 256


def ks(*args: object) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "kimi_student", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )
    if r.returncode != 0:
        sys.exit(f"{args[0]} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout.strip().splitlines()[-1]


def rate_from_log(run: Path) -> float:
    h = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    return (h[-1]["tokens"] - h[0]["tokens"]) / (h[-1]["elapsed_s"] - h[0]["elapsed_s"])


def ours(work: Path, name: str, steps: int, precision: str, teacher: bool) -> float:
    import yaml

    loss = {"jsd": 1.0, "jsd_beta": 0.5, "temperature": 1.0}
    train = {
        "system_prompt": False,
        "lr": 5e-5,
        "warmup_steps": 0,
        "batch_size": BATCH,
        "max_steps": steps,
        "grad_clip": 1.0,
        "seq_curriculum": [{"until_step": None, "seq_len": SEQ}],
        "checkpoint_every": 0,
        "seed": 0,
        "process_weights": {},
        "loss": loss,
    }
    from kimi_student.models.student import load_spec

    arch = load_spec("worker", "small").arch  # the same student TRL trains below
    cfg = work / f"{name}.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "role": "worker",
                "train": train,
                "sizes": {"small": {"arch": arch, "init": {"kind": "layer_subset", "teacher": "smollm2"}}},
            }
        )
    )
    args = [
        "train",
        "--config",
        cfg,
        "--size",
        "small",
        "--kd",
        work / "kd.jsonl",
        "--out",
        work / name,
        "--precision",
        precision,
    ]
    if teacher:
        args += ["--teacher", "smollm2"]
    ks(*args)
    return rate_from_log(work / name)


def trl_gkd(work: Path, steps: int, precision: str) -> float:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from kimi_student.backends.embedded import smollm2_folder
    from kimi_student.models.student import build_student, load_spec

    folder = smollm2_folder()
    tok = AutoTokenizer.from_pretrained(str(folder))
    rows = [json.loads(x) for x in (work / "kd.jsonl").read_text().splitlines()[1:]]
    ds = Dataset.from_list(
        [
            {"messages": [*r["messages"], {"role": "assistant", "content": r["text"]}]}
            for r in rows
            if r["status"] == "ok"
        ]
    )
    spec = load_spec("worker", "small")
    student = build_student(spec)
    teacher = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    stamps: list[float] = []
    tokens: list[int] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN201
            stamps.append(time.perf_counter())

    args = GKDConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=BATCH,
        max_steps=steps,
        learning_rate=5e-5,
        lmbda=0.0,
        beta=0.5,
        temperature=1.0,
        max_length=SEQ,
        bf16=precision == "bf16",
        use_cpu=True,
        logging_steps=1000,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        seed=0,
        activation_checkpointing=False,  # TRL turns it on by default; ours recomputes nothing
    )
    trainer = GKDTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[Clock()],
    )
    collate = trainer.data_collator
    for i in range(0, min(len(ds), steps * BATCH), BATCH):  # count the tokens TRL's batches really hold
        batch = collate([ds[j] for j in range(i, min(i + BATCH, len(ds)))])
        tokens.append(int(batch["attention_mask"].sum()))
    trainer.train()
    per_step = sum(tokens[1:]) / max(1, len(tokens[1:]))
    return per_step * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--keep", type=Path)
    a = ap.parse_args()
    import torch

    from kimi_student.train.trainer import pick_precision

    prec = pick_precision("auto")
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "unknown",
    )
    print(
        f"cpu: {cpu}  threads {torch.get_num_threads()}  precision {prec}  batch {BATCH} x {SEQ}, {a.steps} steps"
    )
    work = a.keep or Path(tempfile.mkdtemp(prefix="throughput."))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "kd.jsonl").exists():
        ks("contextual", "gen", "--n", a.prompts * 2, "--seed", 7, "--out", work / "ctx.jsonl")
        rows = [json.loads(x) for x in (work / "ctx.jsonl").read_text().splitlines()[1:]][: a.prompts]
        (work / "p.jsonl").write_text(
            "".join(json.dumps({"id": r["id"], "prompt": r["prompt"]}) + "\n" for r in rows)
        )
        print(
            "   ",
            ks(
                "kd-mix",
                "--teacher",
                "smollm2",
                "--prompts",
                work / "p.jsonl",
                "--out",
                work / "kd.jsonl",
                "--max-new-tokens",
                64,
                "--top-logprobs",
                20,
                "--no-system",
            ),
        )
    header = json.loads((work / "kd.jsonl").read_text().splitlines()[0])
    full = 49152 * 2
    print(
        f"top-20 shard bytes/token {header['logprob_bytes_per_token']:.0f} vs full fp16 logits {full}: "
        f"{header['logprob_bytes_per_token'] / full:.3%}"
    )
    r_trl = trl_gkd(work, a.steps, prec)
    r_full = ours(work, "ours_full", a.steps, prec, teacher=True)
    r_sparse = ours(work, "ours_topk", a.steps, prec, teacher=False)
    print(f"{'trainer':<40} {'tokens/s':>9} {'vs TRL':>7}")
    for name, r in (
        ("TRL GKDTrainer (teacher in loop)", r_trl),
        ("ours, teacher in loop (full JSD)", r_full),
        ("ours, top-20 logprobs (sparse JSD)", r_sparse),
    ):
        print(f"{name:<40} {r:>9.0f} {r / r_trl:>6.2f}x")
    print(f"target >= 1.5x: {'met' if r_sparse / r_trl >= 1.5 else 'NOT met'} (sparse); work folder {work}")


if __name__ == "__main__":
    main()
