"""The training loop: one readable function on `accelerate`, so the same code runs on one CPU core or
under `accelerate launch` on many GPUs and nodes.

`train` reads top to bottom: set up (config, tokenizer, examples, the student or the checkpoint to resume
from, the optional in-process teacher, AdamW), loop, save. Per step: pick the sequence length from the
curriculum, pack a batch, run the student (and the teacher, if any), combine the configured losses,
accumulate, clip, step AdamW and the cosine schedule. Checkpoints (train.checkpoint) carry the model,
optimizer, data-stream state and loss log (safetensors + JSON, no pickle) with a sealed manifest; resuming
from one reproduces the uninterrupted loss curve exactly, and a run folder that does not check is refused.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kimi_student.backends.hf import cpu_has_bf16, load_causal_lm, resolve_teacher_folder
from kimi_student.errors import InputError, KimiStudentError
from kimi_student.export.quant import WeightScheme, scheme
from kimi_student.integrity import ensure_key
from kimi_student.models.student import StudentSpec, build_student, resolve_tokenizer_folder
from kimi_student.outputs import room_for
from kimi_student.train import checkpoint
from kimi_student.train import losses as L
from kimi_student.train.checkpoint import RunPaths
from kimi_student.train.config import PRECISIONS, LossWeights, TrainConfig
from kimi_student.train.examples import Example, ExampleBuilder, ExampleStream, load_examples, pack
from kimi_student.train.qat import fake_quantized
from kimi_student.train.threads import ThreadGovernor, apply_thread_policy


class TrainingError(KimiStudentError):
    """The run itself failed (a non-finite loss): exit code 3."""


def pick_precision(requested: str = "auto") -> str:
    """bf16 autocast only where the CPU/GPU really has bf16 (on AVX2-only CPUs it is ~12x slower). An
    unknown name is refused: it would otherwise train in fp32 without a word."""
    if requested not in PRECISIONS:
        raise InputError(None, None, "precision", f"unknown {requested!r} (known: {', '.join(PRECISIONS)})")
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "no"


# Architectures whose causal-LM logits are exactly the output embedding of the decoder's last hidden state
# (no logit scaling or soft-capping between them), so the head can run at the loss positions alone.
_PLAIN_HEAD = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def target_logits(model: Any, batch: dict[str, torch.Tensor], at: torch.Tensor) -> torch.Tensor:
    """Logits (1, N, V) of packed rows at the N positions `at` selects ((B, L-1), L.loss_positions).

    Only these positions carry a loss (the assistant turns, ~36% of a packed row's), so the head over a
    49k vocabulary and the loss's float32 log-softmax run there alone (bench/train_head.py: a step 1.07x
    faster at 30 layers, 1.11x at 12). Each packed example attends only to itself: transformers builds a
    per-example mask from position ids that restart, but only without a KV cache (with the default
    `use_cache=True` every example would also attend to the ones before it in its row)."""
    if model.config.model_type not in _PLAIN_HEAD:
        return model(**packed_inputs(batch)).logits[:, :-1][at].unsqueeze(0)
    hidden = model.get_decoder()(**packed_inputs(batch)).last_hidden_state
    return model.get_output_embeddings()(hidden[:, :-1][at]).unsqueeze(0)


def packed_inputs(batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The model's inputs for packed rows (no KV cache: see target_logits)."""
    return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}


def _kd_losses(
    lg: torch.Tensor,
    w: torch.Tensor,
    batch: dict[str, torch.Tensor],
    weights: LossWeights,
    teacher_logits: torch.Tensor | None,
) -> dict[str, Callable[[], torch.Tensor]]:
    """The KD terms this batch allows: full logits of an in-process teacher, else the KD mix's top-k
    (none when no position of the batch has logprobs)."""
    t = float(weights.temperature)
    if teacher_logits is not None:
        tl = teacher_logits
        return {
            "kl_forward": lambda: L.kl_forward(lg, tl, t, w),
            "kl_reverse": lambda: L.kl_reverse(lg, tl, t, w),
            "jsd": lambda: L.jsd(lg, tl, weights.jsd_beta, t, w),
        }
    ids, lps = batch["topk_ids"], batch["topk_logprobs"]
    has = ids[..., 0] >= 0
    if not bool(has.any()):
        return {}
    ws = w * has
    safe = ids.clamp_min(0)
    st = float(batch.get("logprob_temperature", 1.0))
    return {
        k: partial(
            L.sparse_kd,
            k,
            lg,
            safe,
            lps,
            beta=weights.jsd_beta,
            temperature=t,
            server_temperature=st,
            weights=ws,
        )
        for k in L.KD_TERMS
    }


def compute_loss(
    logits: torch.Tensor,
    batch: dict[str, torch.Tensor],
    weights: LossWeights,
    teacher_logits: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted loss terms of a micro-batch. `logits` (1, N, V) are the student's at the N loss
    positions and `batch` holds what belongs to them (L.at_loss_positions); `teacher_logits` the same
    positions' of an in-process teacher."""
    lg, tg, w = logits, batch["input_ids"], batch["weights"]
    src = batch["source"]
    terms: dict[str, torch.Tensor] = {}
    # A CE term counts only where its source has weighted tokens in this batch.
    for name, code in (("ce_teacher", 2), ("ce_ground_truth", 1)):
        mask = w * (src == code)
        if weights.weight(name) and bool(mask.any()):
            terms[name] = L.cross_entropy(lg, tg, mask)
    if any(weights.weight(k) for k in L.KD_TERMS):
        kd = _kd_losses(lg, w, batch, weights, teacher_logits)
        for k in L.KD_TERMS:
            if weights.weight(k) and k in kd:
                terms[k] = kd[k]()
    if not terms:
        raise TrainingError("no loss term applies to this data: check `loss:` weights and the data sources")
    total = sum(weights.weight(k) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


@dataclass
class Session:
    """Everything one training process holds, from setup to the final save."""

    spec: StudentSpec
    config: TrainConfig
    paths: RunPaths
    precision: str
    accelerator: Any
    tokenizer_folder: Path
    examples: list[Example]
    model: Any
    teacher: Any | None
    optimizer: Any
    stream: ExampleStream
    history: list[dict[str, Any]]
    start: int  # the first step this process runs (the checkpoint's step when resuming)

    def finite_model(self, step: int) -> Any:
        """The unwrapped model, refused when an update left a weight NaN or inf: the loss is checked
        before backward, so a finite loss can still precede a step that blew the weights up, and such
        weights must never be saved as a good checkpoint."""
        model = self.accelerator.unwrap_model(self.model)
        bad = [name for name, w in model.named_parameters() if not bool(torch.isfinite(w).all())]
        if bad:
            raise TrainingError(
                f"weights are not finite after step {step} ({bad[0]}); stopped. The last good checkpoint is "
                f"{self.paths.latest() or 'none (no checkpoint was written yet)'}"
            )
        return model

    def qat_scheme(self, step: int) -> WeightScheme | None:
        """The weight scheme step `step` (0-based) trains on, or None: full precision."""
        qat = self.config.qat
        return scheme(qat.weights) if qat is not None and step >= qat.start_step else None

    def save_checkpoint(self, step: int) -> Path:
        """checkpoints/step-NNNNNN after `step` steps (the newest `keep_checkpoints` are kept)."""
        model = self.finite_model(step)
        return checkpoint.save(
            self.paths,
            step,
            model,
            self.optimizer,
            self.stream,
            self.history,
            self.tokenizer_folder,
            self.config.resume_sha256(self.spec),
            self.config.keep_checkpoints,
        )

    def save_final(self) -> Path:
        model = self.finite_model(self.config.max_steps)
        return checkpoint.save_final(self.paths, model, self.tokenizer_folder)


def train(
    spec: StudentSpec,
    out: str | Path,
    *,
    data: str | None = None,
    kd: str | None = None,
    teacher: str | None = None,
    max_steps: int | None = None,
    stop_after: int | None = None,
    precision: str = "auto",
    progress: bool = False,
    limit: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) a student. `stop_after` ends the run early at that step (used to test resume).
    Torch threads follow train.threads' policy: the caller's or OMP_NUM_THREADS' count, never more than
    the cores this process may use."""
    config = TrainConfig.from_spec(spec, max_steps=max_steps)
    threads = apply_thread_policy()
    session = _setup(spec, config, RunPaths(Path(out)), data, kd, teacher, limit, precision)
    end = min(config.max_steps, stop_after) if stop_after else config.max_steps
    # at most the policy's count (OMP_NUM_THREADS=1, make test's workers, keeps one thread), and only where
    # the count cannot change the numbers: otherwise one thread throughout, as the same run anywhere gets
    adaptive = config.threads == "adaptive"
    agree = adaptive and threads_agree(session, threads["threads"])
    governor = ThreadGovernor(threads["threads"]) if agree else None
    if adaptive and not agree:
        torch.set_num_threads(1)
    try:
        tokens_seen, elapsed = _loop(session, end, progress, governor)
    finally:
        if adaptive:
            torch.set_num_threads(threads["threads"])
    result = {
        "steps": end,
        "resumed_at": session.start,  # 0: a new run
        "history": session.history,
        "tokens_per_s": tokens_seen / elapsed if elapsed else None,
        "precision": session.precision,
        "threads": (
            {"adaptive": governor.changes if governor else [(0, 1)], "threads_agree": agree}
            if adaptive
            else threads["threads"]
        ),
        "final": None,
    }
    if end == config.max_steps:
        result["final"] = str(session.save_final())
    return result


def _tokenizer_folder(spec: StudentSpec) -> Path:
    if spec.init.get("kind") == "layer_subset":  # copied layers only make sense with the teacher's tokenizer
        return resolve_teacher_folder(spec.init.get("teacher", "smollm2"))
    return resolve_tokenizer_folder(spec.tokenizer)


def _load_teacher(ref: str, student_vocab: int) -> Any:
    """The in-process teacher for full-logit KD, frozen; it must share the student's vocabulary."""
    model = load_causal_lm(resolve_teacher_folder(ref))  # the shared loader: fp32, offline
    model.eval().requires_grad_(False)
    if model.config.vocab_size != student_vocab:
        raise TrainingError(
            f"teacher vocabulary {model.config.vocab_size} != student "
            f"{student_vocab}: logit KD needs one tokenizer"
        )
    return model


def _setup(
    spec: StudentSpec,
    config: TrainConfig,
    paths: RunPaths,
    data: str | None,
    kd: str | None,
    teacher: str | None,
    limit: int | None,
    requested_precision: str,
) -> Session:
    """Examples, the student (new, or the run's latest checkpoint: exact resume), teacher and AdamW."""
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    precision = pick_precision(requested_precision)
    checkpoints = bool(config.checkpoint_every and config.checkpoint_every < config.max_steps)
    latest = checkpoint.resume_point(paths, config.checkpoint_every if checkpoints else config.max_steps)
    if checkpoints:
        ensure_key()  # checkpoints will be sealed
    accelerator = Accelerator(
        mixed_precision=precision if precision in ("bf16", "fp16") else "no",
        gradient_accumulation_steps=config.grad_accum,
        cpu=not torch.cuda.is_available(),
    )
    torch.manual_seed(config.seed)
    resumed = None
    if latest is not None:  # first: a tampered or foreign checkpoint is refused before any data is read
        model, resumed = checkpoint.load(latest, config.resume_sha256(spec))
    tokenizer_folder = _tokenizer_folder(spec)
    builder = ExampleBuilder(AutoTokenizer.from_pretrained(str(tokenizer_folder)), config.process_weights)
    examples = load_examples(builder, data, kd, limit, system=config.system_prompt)
    if latest is None:
        model = build_student(spec, seed=config.seed)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    teacher_model = None
    if teacher:  # on the student's device: accelerate.prepare moves the student alone (a GPU run)
        teacher_model = _load_teacher(teacher, model.config.vocab_size).to(accelerator.device)
    if config.trainable_layers is not None:
        freeze_below(model, config.trainable_layers)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
        betas=(0.9, 0.95),
    )
    fill = (
        {}
        if config.pack_truncate
        else {  # rows in fill order: short examples where padding would be (planned for the last
            # stage's rows: a curriculum's shorter ones are filled less)
            "lengths": [len(e.input_ids) for e in examples],
            "seq_len": config.seq_len_at(config.max_steps - 1),
        }
    )
    stream = ExampleStream(len(examples), config.seed, **(resumed.stream if resumed else {}), **fill)
    if resumed is not None:
        optimizer.load_state_dict(resumed.optimizer)
        torch.set_rng_state(resumed.torch_rng)
        checkpoint.restart_log(paths, resumed.history)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    return Session(
        spec=spec,
        config=config,
        paths=paths,
        precision=precision,
        accelerator=accelerator,
        tokenizer_folder=tokenizer_folder,
        examples=examples,
        model=model,
        teacher=teacher_model,
        optimizer=optimizer,
        stream=stream,
        history=resumed.history if resumed else [],
        start=resumed.step if resumed else 0,
    )


def _loop(s: Session, end: int, progress: bool, governor: ThreadGovernor | None = None) -> tuple[int, float]:
    """Steps start..end, each logged to train_log.jsonl; returns (tokens seen, seconds). A `governor`
    sets the thread count between steps."""
    from tqdm import tqdm

    config = s.config
    bar = tqdm(
        total=config.max_steps,
        initial=s.start,
        disable=not progress,
        unit="step",
        desc=f"train {s.spec.role}",
    )
    tokens_seen, t0 = 0, time.perf_counter()
    with open(s.paths.log, "a" if s.start else "w", encoding="utf-8") as log:
        for step in range(s.start, end):
            seq_len = config.seq_len_at(step)
            for group in s.optimizer.param_groups:
                group["lr"] = config.lr_at(step)
            step_loss, parts, tokens, padded = _optimizer_step(s, step, seq_len)
            tokens_seen += tokens
            record = {
                "step": step + 1,
                "loss": step_loss,
                "lr": config.lr_at(step),
                "seq_len": seq_len,
                **parts,
                "tokens": tokens_seen,  # since this process started (a resumed run counts afresh)
                "padding": round(padded / tokens, 4),  # this step's row positions that hold no example
                "elapsed_s": round(time.perf_counter() - t0, 4),
            }
            s.history.append(record)
            with room_for(s.paths.log):
                log.write(json.dumps(record) + "\n")
                log.flush()
            tps = tokens_seen / max(1e-9, time.perf_counter() - t0)
            bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{tps:.0f}")
            bar.update(1)
            if governor is not None:
                governor.after_step()
            every = config.checkpoint_every
            if every and (step + 1) % every == 0 and step + 1 < config.max_steps:
                s.save_checkpoint(step + 1)
    bar.close()
    return tokens_seen, time.perf_counter() - t0


def _optimizer_step(s: Session, step: int, seq_len: int) -> tuple[float, dict[str, float], int, int]:
    """`grad_accum` micro-batches, then one AdamW step: (mean loss, mean loss terms, row positions, those of
    them that are padding)."""
    accum = s.config.grad_accum
    step_loss, parts_sum, tokens, padded = 0.0, {}, 0, 0
    for _ in range(accum):
        batch, source = _batch(s, s.stream, seq_len)
        with s.accelerator.accumulate(s.model), s.accelerator.autocast():
            loss, parts = _micro_step(s, batch, step)
        step_loss += float(loss.detach()) / accum
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + v / accum
        tokens += source.size
        padded += int(np.count_nonzero(source == 0))
    return step_loss, parts_sum, tokens, padded


def _loss(s: Session, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
    """The student's loss on one micro-batch (the teacher's logits included where there is one)."""
    at = L.loss_positions(batch["weights"])
    logits = target_logits(s.model, batch, at)
    teacher_logits = None
    if s.teacher is not None:
        with torch.no_grad():
            teacher_logits = target_logits(s.teacher, batch, at).float()
    targets = L.at_loss_positions(batch, at)
    return compute_loss(logits.float(), targets, s.config.loss, teacher_logits)


def _batch(s: Session, stream: ExampleStream, seq_len: int) -> tuple[dict[str, Any], np.ndarray]:
    """The next packed micro-batch of `stream` as tensors, and its source array (0: padding)."""
    batch_np = pack(s.examples, stream, seq_len, s.config.batch_size, s.config.pack_truncate)
    batch = {k: torch.from_numpy(v).to(s.accelerator.device) for k, v in batch_np.items()}
    batch["logprob_temperature"] = s.examples[0].logprob_temperature
    return batch, batch_np["source"]


def freeze_below(model: Any, trainable: int) -> None:
    """Freeze the input embeddings (and so a head tied to them) and every decoder layer below the top
    `trainable`; nothing below the first trainable layer needs a gradient, so autograd skips its backward."""
    layers = model.model.layers
    if trainable > len(layers):
        raise InputError(
            None, None, "train.trainable_layers", f"{trainable} > the student's {len(layers)} decoder layers"
        )
    model.model.embed_tokens.requires_grad_(False)
    for layer in layers[: len(layers) - trainable]:
        layer.requires_grad_(False)


def threads_agree(s: Session, n: int) -> bool:
    """Whether 1 and `n` threads give this run's gradients bit for bit, on a batch of its own shape drawn
    from a copy of the stream (the run's order is untouched). At the toy's size they did on AMD EPYC; on a
    Xeon two threads changed fp32 sums (README), and there the count must stay fixed."""
    if n <= 1:
        return True
    batch, _ = _batch(s, copy.deepcopy(s.stream), s.config.seq_len_at(s.start))
    params = [p for p in s.model.parameters() if p.requires_grad]
    grads, before = [], torch.get_num_threads()
    try:
        for k in (1, n):
            torch.set_num_threads(k)
            with s.accelerator.autocast():
                loss, _ = _loss(s, batch)
            grads.append(torch.autograd.grad(loss, params))
    finally:
        torch.set_num_threads(before)
    return all(torch.equal(a, b) for a, b in zip(*grads))


def _micro_step(s: Session, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Forward (student, teacher), loss, backward, clip and step (accelerate skips the step until the
    last micro-batch of the accumulation)."""
    with fake_quantized(s.model, s.qat_scheme(step)):  # QAT: forward and backward on the package's weights
        loss, parts = _loss(s, batch)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss is {float(loss.detach())} at step {step + 1} (as train_log.jsonl counts); stopped. "
                f"The last good checkpoint is {s.paths.latest() or 'none (no checkpoint was written yet)'}"
            )
        s.accelerator.backward(loss / s.config.grad_accum)
    if s.accelerator.sync_gradients and s.config.grad_clip:
        s.accelerator.clip_grad_norm_(s.model.parameters(), s.config.grad_clip)
    s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    return loss, parts
