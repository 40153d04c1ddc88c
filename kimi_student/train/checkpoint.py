"""A training run's folder and its checkpoints: save, verify and resume.

A checkpoint is an HF model folder plus the training state (optimizer, data-stream position, loss log,
torch RNG) and a sha256 manifest, published by renaming a temp folder so a reader never sees half of one.
Resuming from it reproduces the uninterrupted run exactly; a checkpoint that differs from its manifest
is refused (ManifestError, exit code 2).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kimi_student.jsonl import atomic_writer
from kimi_student.manifest import verify_digests, write_digests
from kimi_student.models.student import save_checkpoint
from kimi_student.train.examples import ExampleStream


@dataclass
class RunPaths:
    """checkpoints/step-NNNNNN (the newest named by checkpoints/LATEST), train_log.jsonl and final/."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def log(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def final(self) -> Path:
        return self.root / "final"

    def latest(self) -> Path | None:
        marker = self.checkpoints / "LATEST"
        if not marker.is_file():
            return None
        p = self.checkpoints / marker.read_text().strip()
        return p if (p / "state.pt").is_file() else None


@dataclass
class Resumed:
    """What a checkpoint restores besides the model: the step to go on from and the training state."""

    step: int
    optimizer: dict[str, Any]
    stream: dict[str, int]
    history: list[dict[str, Any]]
    torch_rng: torch.Tensor


def save(
    paths: RunPaths,
    step: int,
    model: Any,
    optimizer: Any,
    stream: ExampleStream,
    history: list[dict[str, Any]],
    tokenizer_folder: Path,
    keep: int = 2,
) -> Path:
    """A checkpoint of the (unwrapped) model and the training state; only the newest `keep` stay."""
    name = f"step-{step:06d}"
    dest = paths.checkpoints / name
    tmp = paths.checkpoints / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tokenizer_folder, tmp / "model")
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "stream": stream.state(),
        "history": history,
        "torch_rng": torch.get_rng_state(),
    }
    torch.save(state, tmp / "state.pt")
    write_digests(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    with atomic_writer(paths.checkpoints / "LATEST") as fh:
        fh.write(name)
    for old in sorted(paths.checkpoints.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def save_final(paths: RunPaths, model: Any, tokenizer_folder: Path) -> Path:
    """The run's result, final/: an HF folder that AutoModelForCausalLM loads, with its manifest."""
    final = save_checkpoint(model, tokenizer_folder, paths.final)
    write_digests(final)
    return final


def verify(folder: Path) -> None:
    """Every file of the checkpoint still has the sha256 its manifest recorded."""
    verify_digests(folder, "checkpoint")


def load(folder: Path) -> tuple[Any, Resumed]:
    """The checkpoint's model (fp32) and training state, once its files match the manifest."""
    from transformers import AutoModelForCausalLM

    verify(folder)
    state = torch.load(folder / "state.pt", weights_only=False)
    model = AutoModelForCausalLM.from_pretrained(str(folder / "model"), dtype=torch.float32)
    return model, Resumed(
        state["step"], state["optimizer"], state["stream"], state["history"], state["torch_rng"]
    )


def restart_log(paths: RunPaths, history: list[dict[str, Any]]) -> None:
    """The log restarts from the checkpoint's history: no step is logged twice."""
    with atomic_writer(paths.log) as fh:
        fh.writelines(json.dumps(h) + "\n" for h in history)
