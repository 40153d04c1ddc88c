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

Each side trains in its own process, one after the other, under each `--load` condition: 0 (whatever
else the machine runs) and N (this bench also runs N processes that each burn one core, so a shared
machine is reproducible). The OS threads each process held (/proc/PID/task, the most seen) are printed,
with the CPU, the precision (bf16 only where oneDNN has it) and the torch thread settings.
Targets, under every load: ours >= 1.0x with the teacher in the loop, >= 1.5x from top-20 logprobs.

    .venv/bin/python bench/train_throughput.py [--steps 12] [--load 0,1]   (needs `pip install trl==1.16.0`)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["HF_HUB_OFFLINE"] = "1"
BATCH, SEQ = 4, 256


def sampled(cmd: list[str]) -> tuple[str, int]:
    """Run `cmd` to the end: (its last stdout line, the most OS threads it held at once)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, text=True)
        most = 0
        while p.poll() is None:
            try:
                most = max(most, len(os.listdir(f"/proc/{p.pid}/task")))
            except OSError:
                pass
            time.sleep(0.5)
        out.seek(0)
        err.seek(0)
        text = out.read()
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd[1:5])} failed:\n{text}\n{err.read()}")
    return text.strip().splitlines()[-1], most


def ks(*args: object) -> str:
    return sampled([sys.executable, "-m", "kimi_student", *map(str, args)])[0]


def rate_from_log(run: Path) -> float:
    h = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    return (h[-1]["tokens"] - h[0]["tokens"]) / (h[-1]["elapsed_s"] - h[0]["elapsed_s"])


def ours(work: Path, name: str, steps: int, precision: str, teacher: bool) -> tuple[float, int, int]:
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
    shutil.rmtree(work / name, ignore_errors=True)
    _, most = sampled([sys.executable, "-m", "kimi_student", *map(str, args)])
    return rate_from_log(work / name), policy_threads(), most


def policy_threads() -> int:
    """The torch threads our trainer's policy picks in a process started like ours (same environment)."""
    import torch

    from kimi_student.train.threads import available_cores, capped_threads

    return capped_threads(torch.get_num_threads(), available_cores())


def trl(work: Path, steps: int, precision: str) -> tuple[float, int, int]:
    """TRL in its own process, like ours (the same start-up, the same torch defaults)."""
    line, most = sampled(
        [sys.executable, __file__, "--trl-run", str(work), "--steps", str(steps), "--precision", precision]
    )
    rate, threads = line.split()
    return float(rate), int(threads), most


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


def cpu_model() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown")


def make_kd(work: Path, prompts: int) -> None:
    ks("contextual", "gen", "--n", prompts * 2, "--seed", 7, "--out", work / "ctx.jsonl")
    rows = [json.loads(x) for x in (work / "ctx.jsonl").read_text().splitlines()[1:]][:prompts]
    (work / "p.jsonl").write_text(
        "".join(json.dumps({"id": r["id"], "prompt": r["prompt"]}) + "\n" for r in rows)
    )
    kd = ["--prompts", work / "p.jsonl", "--out", work / "kd.jsonl", "--max-new-tokens", 64]
    print("   ", ks("kd-mix", "--teacher", "smollm2", *kd, "--top-logprobs", 20, "--no-system"))


def burners(n: int) -> list[subprocess.Popen]:
    """`n` processes that each keep one core busy: the competing load of `--load n`."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def header(steps: int) -> str:
    import torch

    from kimi_student.train.threads import available_cores, capped_threads, cgroup_cpu_limit
    from kimi_student.train.trainer import pick_precision

    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        bf16 = False
    cores, default = available_cores(), torch.get_num_threads()
    env = " ".join(
        f"{v}={os.environ.get(v, '-')}" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
    )
    return (
        f"cpu: {cpu_model()}  affinity {len(os.sched_getaffinity(0))} cpus, cgroup limit {cgroup_cpu_limit()}\n"
        f"precision: {pick_precision('auto')} (oneDNN bf16 {'yes' if bf16 else 'no'})  batch {BATCH} x {SEQ}, "
        f"{steps} steps\n"
        f"torch threads: default {default}, interop {torch.get_num_interop_threads()}; TRL keeps the default, "
        f"ours {capped_threads(default, cores)} (capped at {cores} available cores); {env}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument(
        "--load", default="0,1", help="comma-separated: busy cores this bench adds, per condition"
    )
    ap.add_argument("--keep", type=Path)
    ap.add_argument("--trl-run", type=Path, help=argparse.SUPPRESS)  # the TRL side, in its own process
    ap.add_argument("--precision", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.trl_run:
        import torch

        print(trl_gkd(a.trl_run, a.steps, a.precision), torch.get_num_threads())
        return
    loads = [int(x) for x in a.load.split(",")]
    print(header(a.steps))
    from kimi_student.train.trainer import pick_precision

    prec = pick_precision("auto")
    work = a.keep or Path(tempfile.mkdtemp(prefix="throughput."))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "kd.jsonl").exists():
        make_kd(work, a.prompts)
    header_kd = json.loads((work / "kd.jsonl").read_text().splitlines()[0])
    full = 49152 * 2
    bpt = header_kd["logprob_bytes_per_token"]
    print(f"top-20 shard bytes/token {bpt:.0f} vs full fp16 logits {full}: {bpt / full:.3%}")
    print(f"{'load':<30} {'trainer':<36} {'tokens/s':>9} {'vs TRL':>7} {'threads':>8} {'OS thr':>6}")
    verdicts = []
    for n in loads:
        busy = burners(n)
        try:
            la = os.getloadavg()[0]
            r_trl = trl(work, a.steps, prec)
            r_full = ours(work, "ours_full", a.steps, prec, teacher=True)
            r_sparse = ours(work, "ours_topk", a.steps, prec, teacher=False)
        finally:
            for p in busy:
                p.kill()
                p.wait()
        cond = f"+{n} busy core{'s' if n != 1 else ''} (loadavg {la:.1f})"
        for name, (r, threads, most) in (
            ("TRL GKDTrainer (teacher in loop)", r_trl),
            ("ours, teacher in loop (full JSD)", r_full),
            ("ours, top-20 logprobs (sparse JSD)", r_sparse),
        ):
            print(f"{cond:<30} {name:<36} {r:>9.0f} {r / r_trl[0]:>6.2f}x {threads:>8} {most:>6}")
        ok = r_full[0] / r_trl[0] >= 1.0 and r_sparse[0] / r_trl[0] >= 1.5
        verdicts.append(f"load +{n}: {'met' if ok else 'NOT met'}")
    print(f"targets (>= 1.0x teacher in loop, >= 1.5x sparse): {'; '.join(verdicts)}; work folder {work}")


if __name__ == "__main__":
    main()
