"""The training configuration: every key of a config's `train:` block (and of `sizes.<size>.train:`,
which overrides it) declared once, with its default and what it does.

A config is plain YAML (configs/worker.yaml, judge, drafter, the training part of toy_e2e.yaml), read by
`models.student.load_spec` into `StudentSpec.train`. `TrainConfig.from_spec` turns that mapping into a
frozen object and refuses a key it does not know, naming the file, the key and the known keys: a
misspelt key would otherwise be ignored and the run would silently use the default.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from kimi_student.errors import InputError
from kimi_student.fingerprint import sha256_json
from kimi_student.models.student import StudentSpec

PRECISIONS = ("auto", "bf16", "fp16", "no")  # train --precision: auto is bf16 where the CPU runs it natively

# The spans train.examples weighs: tool names, JSON arguments, integration spans (process_spans), the
# first token of each assistant turn, where the model decides to call a tool or answer (turn_start), and a
# Judge's decision: the status and violated clauses of its verdict, or the winner of a pair (verdict), and
# of its audit's check lines, the decisions of those that break a rule (broken: in a case ~1 line in 16, so
# weighted apart they are not drowned by the `ok`s).
PROCESS_KINDS = ("tool_name", "json_args", "integration", "turn_start", "verdict", "broken")
# export/quant.py's schemes (named here: a config is checked before torch loads)
QAT_WEIGHTS = ("int8", "int4", "int4emb8")


@dataclass(frozen=True)
class CurriculumStage:
    """Rows of `seq_len` tokens until step `until_step` (exclusive); None: to the end of the run."""

    seq_len: int
    until_step: int | None = None


@dataclass(frozen=True)
class LossWeights:
    """Weight of each loss term; a term left out has weight 0 (no term: the run stops with an error)."""

    ce_teacher: float = 0.0  # cross-entropy on teacher text (KD mix)
    ce_ground_truth: float = 0.0  # cross-entropy on gold text (contextual dataset)
    kl_forward: float = 0.0  # KL(teacher || student), full logits or the KD mix's top-k
    kl_reverse: float = 0.0  # KL(student || teacher)
    jsd: float = 0.0  # generalised Jensen-Shannon divergence
    jsd_beta: float = 0.5  # its mixture weight
    temperature: float = 1.0  # of the KL/JSD terms (scaled by T^2)

    def weight(self, term: str) -> float:
        """The weight of a term by its name (the names the loss log uses)."""
        return getattr(self, term)


@dataclass(frozen=True)
class QatConfig:
    """Quantization-aware training: every forward and backward runs on the weights as the Core ML export
    will store them (`weights`: a scheme of export/quant.py), the gradient passed straight through to the
    full-precision weights that the optimizer keeps and the checkpoint saves."""

    weights: str  # int8 | int4 | int4emb8
    start_step: int = 0  # steps before it in full precision (fine-tuning a trained student: 0)


# Keys added after runs were checkpointed: left out of the resume seal while unset, so those runs resume.
_LATER_KEYS = ("trainable_layers",)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One student's training recipe. `lr` and `max_steps` have no default: a config must say them."""

    system_prompt: bool = True  # the 1.3k-token tool-use system prompt before gold prompts
    lr: float  # peak learning rate (AdamW, betas 0.9/0.95)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at max_steps
    warmup_steps: int = 0  # linear warm-up from lr / warmup_steps
    weight_decay: float = 0.0
    batch_size: int = 4  # packed rows per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int  # optimizer steps (`kimi-student train --max-steps` overrides it)
    grad_clip: float | None = None  # max gradient norm; None or 0: no clipping
    seq_curriculum: tuple[CurriculumStage, ...] = (CurriculumStage(seq_len=256),)
    pack_truncate: bool = True  # False: an example that does not fit a row's rest starts the next row
    loss: LossWeights = LossWeights(ce_teacher=1.0, ce_ground_truth=1.0)
    process_weights: dict[str, float] = field(default_factory=dict)  # per kind in PROCESS_KINDS; absent: 1
    checkpoint_every: int = 0  # steps between checkpoints; 0: only the final one
    keep_checkpoints: int = 2  # the newest N checkpoints are kept; 0: every one (a learning curve)
    seed: int = 0  # model init, data order
    # None: the thread policy's fixed count; "adaptive": all cores while the machine is otherwise idle, one
    # thread while other work shares them (train/threads.py ThreadGovernor)
    threads: str | None = None
    qat: QatConfig | None = None  # quantization-aware training; None: full-precision weights throughout
    # Only the top N decoder layers (and the final norm, and an untied output head) train; the embeddings and
    # the layers below are frozen and their backward is skipped: more examples an hour when fine-tuning a
    # pretrained student on a narrow task (bench/partial_finetune.py). None: every weight trains.
    trainable_layers: int | None = None
    # Not read by the trainer (`kimi-student train` takes --precision): the toy recipe passes it on.
    precision: str = "no"

    @classmethod
    def from_spec(cls, spec: StudentSpec, max_steps: int | None = None) -> TrainConfig:
        """The spec's `train:` mapping, checked key by key; `max_steps` overrides the config's."""
        raw = dict(spec.train)
        if max_steps is not None:
            raw["max_steps"] = max_steps
        _check_keys(cls, raw, "train", spec.source)
        stages = raw.get("seq_curriculum")
        if stages is not None:
            raw["seq_curriculum"] = tuple(
                _build(CurriculumStage, s, f"train.seq_curriculum[{i}]", spec.source)
                for i, s in enumerate(stages)
            )
        if "loss" in raw:
            raw["loss"] = _build(LossWeights, raw["loss"], "train.loss", spec.source)
        if raw.get("qat") is not None:
            raw["qat"] = _build(QatConfig, raw["qat"], "train.qat", spec.source)
            if raw["qat"].weights not in QAT_WEIGHTS:
                raise InputError(
                    spec.source, None, "train.qat.weights",
                    f"must be one of {', '.join(QAT_WEIGHTS)}, got {raw['qat'].weights!r}",
                )  # fmt: skip
        weights = raw.get("process_weights") or {}
        _check_keys(None, weights, "train.process_weights", spec.source, PROCESS_KINDS)
        top = raw.get("trainable_layers")
        if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 1):
            raise InputError(
                spec.source, None, "train.trainable_layers", f"must be a whole number >= 1, got {top!r}"
            )
        keep = raw.get("keep_checkpoints", 2)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            raise InputError(
                spec.source, None, "train.keep_checkpoints", f"must be a whole number >= 0, got {keep!r}"
            )
        if raw.get("threads") not in (None, "adaptive"):
            raise InputError(
                spec.source, None, "train.threads", f"must be adaptive or absent, got {raw['threads']!r}"
            )
        return cls(**raw)

    def resume_sha256(self, spec: StudentSpec) -> str:
        """What a checkpoint is sealed to: the student (architecture, init, tokenizer) and every setting
        but `max_steps` (a run may be extended) and `precision` (not read by the trainer). Resuming under
        another config is refused rather than silently mixing two recipes."""
        train = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("max_steps", "precision") and not (k in _LATER_KEYS and v is None)
        }
        return sha256_json(
            {"arch": spec.arch, "init": spec.init, "tokenizer": spec.tokenizer, "train": train}
        )

    def seq_len_at(self, step: int) -> int:
        for stage in self.seq_curriculum:
            if stage.until_step is None or step < stage.until_step:
                return int(stage.seq_len)
        return int(self.seq_curriculum[-1].seq_len)

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to lr * min_lr_ratio at max_steps."""
        base, warm, total = self.lr, self.warmup_steps, self.max_steps
        if step < warm:
            return base * (step + 1) / warm
        frac = min(1.0, (step - warm) / max(1, total - warm))
        floor = base * self.min_lr_ratio
        return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * frac))


T = TypeVar("T")


def _check_keys(
    cls: type | None, raw: Any, where: str, path: Path | None, known: tuple[str, ...] | None = None
) -> None:
    """A mapping with only known keys and every required one; the error names file, key and known keys."""
    if not isinstance(raw, dict):
        raise InputError(path, None, where, f"expected a mapping, got {type(raw).__name__}")
    declared = fields(cls) if cls is not None else ()
    known = known or tuple(f.name for f in declared)
    for key in raw:
        if key not in known:
            raise InputError(path, None, f"{where}.{key}", f"unknown key (known: {', '.join(known)})")
    missing = [f.name for f in declared if f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in missing if k not in raw]
    if missing:
        raise InputError(path, None, where, f"missing {', '.join(missing)}")


def _build(cls: type[T], raw: Any, where: str, path: Path | None) -> T:
    _check_keys(cls, raw, where, path)
    return cls(**raw)
