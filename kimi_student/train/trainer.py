"""The training loop: one readable function on `accelerate`, so the same code runs on one CPU core or
under `accelerate launch` on many GPUs and nodes.

Per step: pick the sequence length from the curriculum, pack a batch, run the student (and the
in-process teacher, if any), combine the configured losses, accumulate, clip, step AdamW and the
cosine schedule. Checkpoints carry the model, optimizer, scheduler, data-stream state and loss log
with a sha256 manifest; resuming from one reproduces the uninterrupted loss curve exactly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kimi_student.backends.hf import resolve_teacher_folder
from kimi_student.errors import KimiStudentError
from kimi_student.fingerprint import sha256_file
from kimi_student.jsonl import atomic_writer, write_json
from kimi_student.models.student import StudentSpec, build_student, resolve_tokenizer_folder, save_checkpoint
from kimi_student.train import losses as L
from kimi_student.train.examples import ExampleBuilder, ExampleStream, load_examples, pack


class TrainingError(KimiStudentError):
    """The run itself failed (a non-finite loss): exit code 3."""


class CheckpointError(KimiStudentError):
    """A checkpoint that does not match its manifest: bad input, exit code 2."""


def pick_precision(requested: str = "auto") -> str:
    """bf16 autocast only where the CPU/GPU really has bf16 (on AVX2-only CPUs it is ~12x slower)."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"
    except (AttributeError, RuntimeError):
        return "no"


def seq_len_at(step: int, curriculum: list[dict[str, Any]]) -> int:
    for stage in curriculum:
        if stage.get("until_step") is None or step < stage["until_step"]:
            return int(stage["seq_len"])
    return int(curriculum[-1]["seq_len"])


def lr_at(step: int, cfg: dict[str, Any]) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio at max_steps."""
    base, warm, total = cfg["lr"], cfg.get("warmup_steps", 0), cfg["max_steps"]
    if step < warm:
        return base * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, total - warm))
    floor = base * cfg.get("min_lr_ratio", 0.1)
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * frac))


@dataclass
class RunPaths:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def log(self) -> Path:
        return self.root / "train_log.jsonl"

    def latest(self) -> Path | None:
        marker = self.checkpoints / "LATEST"
        if not marker.is_file():
            return None
        p = self.checkpoints / marker.read_text().strip()
        return p if (p / "state.pt").is_file() else None


def packed_logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of packed rows, each example attending only to itself.

    transformers builds a per-example mask from position ids that restart, but only without a KV cache:
    with the default `use_cache=True` every example would also attend to the ones before it in its row."""
    return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits


def compute_loss(
    logits: torch.Tensor,
    batch: dict[str, torch.Tensor],
    weights: dict[str, float],
    teacher_logits: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    lg, tg, w = L.shift_for_next_token(logits, batch["input_ids"], batch["weights"])
    src = batch["source"][:, 1:]
    t = float(weights.get("temperature", 1.0))
    terms: dict[str, torch.Tensor] = {}
    # A CE term counts only where its source has weighted tokens in this batch.
    for name, code in (("ce_teacher", 2), ("ce_ground_truth", 1)):
        mask = w * (src == code)
        if weights.get(name) and bool(mask.any()):
            terms[name] = L.cross_entropy(lg, tg, mask)
    kd = {k: weights.get(k, 0.0) for k in ("kl_forward", "kl_reverse", "jsd")}
    if any(kd.values()):
        if teacher_logits is not None:
            tl = teacher_logits[:, :-1]
            fns = {
                "kl_forward": lambda: L.kl_forward(lg, tl, t, w),
                "kl_reverse": lambda: L.kl_reverse(lg, tl, t, w),
                "jsd": lambda: L.jsd(lg, tl, weights.get("jsd_beta", 0.5), t, w),
            }
        else:
            ids, lps = batch["topk_ids"][:, 1:], batch["topk_logprobs"][:, 1:]
            has = ids[..., 0] >= 0
            ws = w * has
            safe = ids.clamp_min(0)
            st = float(batch.get("logprob_temperature", 1.0))
            fns = {
                "kl_forward": lambda: L.sparse_kl_forward(lg, safe, lps, t, st, ws),
                "kl_reverse": lambda: L.sparse_kl_reverse(lg, safe, lps, t, st, ws),
                "jsd": lambda: L.sparse_jsd(lg, safe, lps, weights.get("jsd_beta", 0.5), t, st, ws),
            }
            if not bool(has.any()):
                fns = {}
        for k, v in kd.items():
            if v and k in fns:
                terms[k] = fns[k]()
    if not terms:
        raise TrainingError("no loss term applies to this data: check `loss:` weights and the data sources")
    total = sum(weights[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


def _save(
    paths: RunPaths,
    step: int,
    model: Any,
    optimizer: Any,
    stream: ExampleStream,
    history: list[dict],
    tokenizer_folder: Path,
    accelerator: Any,
    keep: int = 2,
) -> Path:
    """A checkpoint: HF folder + training state + sha256 manifest, published by renaming a temp folder."""
    name = f"step-{step:06d}"
    dest = paths.checkpoints / name
    tmp = paths.checkpoints / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(accelerator.unwrap_model(model), tokenizer_folder, tmp / "model")
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "stream": stream.state(),
            "history": history,
            "torch_rng": torch.get_rng_state(),
        },
        tmp / "state.pt",
    )
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    write_json(tmp / "manifest.json", {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files})
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    with atomic_writer(paths.checkpoints / "LATEST") as fh:
        fh.write(name)
    for old in sorted(paths.checkpoints.glob("step-*"))[:-keep]:  # keep the newest `keep`
        shutil.rmtree(old, ignore_errors=True)
    return dest


def verify_manifest(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    for rel, digest in manifest.items():
        if sha256_file(folder / rel) != digest:
            raise CheckpointError(f"checkpoint {folder}: {rel} does not match its sha256 in manifest.json")


def train(
    spec: StudentSpec,
    out: str | Path,
    data: str | None = None,
    kd: str | None = None,
    teacher: str | None = None,
    max_steps: int | None = None,
    stop_after: int | None = None,
    precision: str = "auto",
    progress: bool = False,
    limit: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) a student. `stop_after` ends the run early at that step (used to test resume)."""
    from accelerate import Accelerator
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = dict(spec.train)
    if max_steps is not None:
        cfg["max_steps"] = max_steps
    prec = pick_precision(precision)
    accelerator = Accelerator(
        mixed_precision=prec if prec in ("bf16", "fp16") else "no",
        gradient_accumulation_steps=cfg.get("grad_accum", 1),
        cpu=not torch.cuda.is_available(),
    )
    seed = int(cfg.get("seed", 0))
    torch.manual_seed(seed)
    if spec.init.get("kind") == "layer_subset":  # copied layers only make sense with the teacher's tokenizer
        tok_folder = resolve_teacher_folder(spec.init.get("teacher", "smollm2"))
    else:
        tok_folder = resolve_tokenizer_folder(spec.tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_folder))
    builder = ExampleBuilder(tokenizer, cfg.get("process_weights", {}))
    examples = load_examples(builder, data, kd, limit, system=cfg.get("system_prompt", True))
    paths = RunPaths(Path(out))
    paths.checkpoints.mkdir(parents=True, exist_ok=True)

    model = build_student(spec, seed=seed)
    t_model = None
    if teacher:
        t_model = AutoModelForCausalLM.from_pretrained(
            str(resolve_teacher_folder(teacher)), dtype=torch.float32
        )
        t_model.eval().requires_grad_(False)
        if t_model.config.vocab_size != model.config.vocab_size:
            raise TrainingError(
                f"teacher vocabulary {t_model.config.vocab_size} != student "
                f"{model.config.vocab_size}: logit KD needs one tokenizer"
            )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0), betas=(0.9, 0.95)
    )
    stream = ExampleStream(len(examples), seed)
    history: list[dict[str, Any]] = []
    start = 0
    latest = paths.latest()
    if latest is not None:  # exact resume
        verify_manifest(latest)
        state = torch.load(latest / "state.pt", weights_only=False)
        model = AutoModelForCausalLM.from_pretrained(str(latest / "model"), dtype=torch.float32)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0), betas=(0.9, 0.95)
        )
        optimizer.load_state_dict(state["optimizer"])
        stream = ExampleStream(len(examples), seed, **state["stream"])
        history = state["history"]
        torch.set_rng_state(state["torch_rng"])
        start = state["step"]
        with atomic_writer(paths.log) as fh:  # the log restarts from the checkpoint: no step twice
            fh.writelines(json.dumps(h) + "\n" for h in history)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    lw = cfg.get("loss", {"ce_teacher": 1.0, "ce_ground_truth": 1.0})
    every = cfg.get("checkpoint_every", 0)
    accum = cfg.get("grad_accum", 1)
    total_steps = cfg["max_steps"]
    end = min(total_steps, stop_after) if stop_after else total_steps
    bar = tqdm(total=total_steps, initial=start, disable=not progress, unit="step", desc=f"train {spec.role}")
    log_mode = "a" if start else "w"
    tokens_seen, t0 = 0, time.perf_counter()
    with open(paths.log, log_mode, encoding="utf-8") as log:
        for step in range(start, end):
            seq_len = seq_len_at(step, cfg.get("seq_curriculum", [{"seq_len": 256}]))
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, cfg)
            step_loss, parts_sum = 0.0, {}
            for _ in range(accum):
                batch_np = pack(
                    examples, stream, seq_len, cfg.get("batch_size", 4), cfg.get("pack_truncate", True)
                )
                batch = {k: torch.from_numpy(v).to(accelerator.device) for k, v in batch_np.items()}
                batch["logprob_temperature"] = examples[0].logprob_temperature
                with accelerator.accumulate(model), accelerator.autocast():
                    logits = packed_logits(model, batch)
                    t_logits = None
                    if t_model is not None:
                        with torch.no_grad():
                            t_logits = packed_logits(t_model, batch)
                    loss, parts = compute_loss(
                        logits.float(), batch, lw, t_logits.float() if t_logits is not None else None
                    )
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"loss is {float(loss.detach())} at step {step}; stopped. The last good checkpoint is "
                            f"{paths.latest() or 'none (no checkpoint was written yet)'}"
                        )
                    accelerator.backward(loss / accum)
                    if accelerator.sync_gradients and cfg.get("grad_clip"):
                        accelerator.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                step_loss += float(loss.detach()) / accum
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v / accum
                tokens_seen += int(np.count_nonzero(batch_np["input_ids"] >= 0))
            rec = {
                "step": step + 1,
                "loss": step_loss,
                "lr": lr_at(step, cfg),
                "seq_len": seq_len,
                **parts_sum,
                "tokens": tokens_seen,  # since this process started (a resumed run counts afresh)
                "elapsed_s": round(time.perf_counter() - t0, 4),
            }
            history.append(rec)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            tps = tokens_seen / max(1e-9, time.perf_counter() - t0)
            bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{tps:.0f}")
            bar.update(1)
            if every and (step + 1) % every == 0 and step + 1 < total_steps:
                _save(
                    paths,
                    step + 1,
                    model,
                    optimizer,
                    stream,
                    history,
                    tok_folder,
                    accelerator,
                    cfg.get("keep_checkpoints", 2),
                )
    bar.close()
    elapsed = time.perf_counter() - t0
    result = {
        "steps": end,
        "history": history,
        "tokens_per_s": tokens_seen / elapsed if elapsed else None,
        "precision": prec,
        "final": None,
    }
    if end == total_steps:
        final = save_checkpoint(accelerator.unwrap_model(model), tok_folder, paths.root / "final")
        files = sorted(p for p in final.rglob("*") if p.is_file() and p.name != "manifest.json")
        write_json(final / "manifest.json", {p.relative_to(final).as_posix(): sha256_file(p) for p in files})
        result["final"] = str(final)
    return result
