"""A training run's folder and its checkpoints: save, verify and resume.

A checkpoint is an HF model folder (safetensors weights) plus the training state (train.state:
safetensors + JSON, never a pickle) and a sealed manifest (train.checkpoint_manifest), published by
renaming a temp folder so a reader never sees half of one. Resuming from it reproduces the uninterrupted
run exactly.

Everything in a run folder is untrusted input: `checkpoints/LATEST` must name a `step-NNNNNN` folder inside
`checkpoints/`, the checkpoint must match its sealed manifest, and a folder that holds a log but nothing to
resume from is refused instead of silently restarted (which would truncate the log). Each refusal is one
ManifestError line (exit code 2); `--fresh` (`discard`) starts an unfinished run over.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kimi_student.errors import InputError
from kimi_student.jsonl import atomic_writer
from kimi_student.manifest import ManifestError, write_digests
from kimi_student.models.student import save_checkpoint
from kimi_student.outputs import room_for
from kimi_student.train import checkpoint_manifest
from kimi_student.train.checkpoint_manifest import FRESH
from kimi_student.train.examples import ExampleStream
from kimi_student.train.state import TrainState, read_state, write_state

_STEP = re.compile(r"step-\d{6}")
# a checkpoint save, or its LATEST, cut short by a kill (the latter's name is `outputs.temp_path`'s)
_HALF_WRITTEN = re.compile(r"\.step-\d{6}\.tmp|\.LATEST\.\d+\.[0-9a-f]+\.tmp")


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
        """The checkpoint folder LATEST names; None without a LATEST. A LATEST that is not a plain file
        naming an existing `step-NNNNNN` folder inside checkpoints/ (no `..`, no absolute path, no
        symlink) is a ManifestError."""
        marker = self.checkpoints / "LATEST"
        if not marker.exists() and not marker.is_symlink():
            return None
        if marker.is_symlink() or not marker.is_file():
            raise ManifestError(marker, "not a regular file")
        with open(marker, "rb") as fh:
            raw = fh.read(64)
        name = raw.decode("utf-8", "replace").strip()
        if not _STEP.fullmatch(name):
            raise ManifestError(
                marker, f"names {name[:40]!r}, not a checkpoint folder step-NNNNNN inside {self.checkpoints}"
            )
        folder = self.checkpoints / name
        if folder.is_symlink():
            raise ManifestError(marker, f"names {name}, which is a symlink")
        if not folder.is_dir():
            raise ManifestError(marker, f"names {name}, which does not exist; {FRESH}")
        if not folder.resolve().is_relative_to(self.root.resolve()):
            raise ManifestError(marker, f"names {name}, which resolves outside the run folder {self.root}")
        return folder


def save(
    paths: RunPaths,
    step: int,
    model: Any,
    optimizer: Any,
    stream: ExampleStream,
    history: list[dict[str, Any]],
    tokenizer_folder: Path,
    config_sha256: str,
    keep: int = 2,
) -> Path:
    """A checkpoint of the (unwrapped) model and the training state; only the newest `keep` stay (0: all of
    them, for a learning curve read checkpoint by checkpoint)."""
    name = f"step-{step:06d}"
    dest = paths.checkpoints / name
    for stale in paths.checkpoints.glob(".step-*.tmp"):  # left by a killed run (_HALF_WRITTEN)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = paths.checkpoints / f".{name}.tmp"
    try:
        with room_for(dest):
            save_checkpoint(model, tokenizer_folder, tmp / "model")
            state = TrainState(step, optimizer.state_dict(), stream.state(), history, torch.get_rng_state())
            write_state(tmp, state)
            checkpoint_manifest.write(tmp, step, config_sha256)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    _name_latest(paths, dest)
    if keep > 0:
        for old in sorted(paths.checkpoints.glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def _name_latest(paths: RunPaths, checkpoint: Path) -> None:
    """LATEST names `checkpoint` (written whole; a LATEST temp that a kill left is removed)."""
    with atomic_writer(paths.checkpoints / "LATEST") as fh:
        fh.write(checkpoint.name)


def save_final(paths: RunPaths, model: Any, tokenizer_folder: Path) -> Path:
    """The run's result, final/: an HF folder that AutoModelForCausalLM loads, with its manifest."""
    with room_for(paths.final):
        final = save_checkpoint(model, tokenizer_folder, paths.final)
        write_digests(final)
    return final


def verify(folder: Path, config_sha256: str | None = None) -> int:
    """The checkpoint's step, once every file matches its sealed manifest (and, given, the config)."""
    return checkpoint_manifest.verify(folder, config_sha256)


def resume_point(paths: RunPaths, first_checkpoint: int) -> Path | None:
    """The checkpoint to resume from (`load` verifies it), or None for a new run. A run killed before its
    first checkpoint (step `first_checkpoint`) was complete has nothing to resume: its log holds steps up to
    that one at most (a step is logged before its checkpoint is saved) and its checkpoints/ at most a
    half-written `.step-*.tmp`, so it starts again from step 0, losing nothing. One killed after renaming
    its first checkpoint into place but before LATEST named it resumes from that checkpoint, once it
    matches its manifest (LATEST is then written, as the save would have).
    Any other folder with a log or checkpoints but no LATEST is refused: restarting would truncate its log."""
    latest = paths.latest()
    if latest is not None:
        return latest
    if paths.final.exists():
        raise ManifestError(
            paths.final,
            "the run is finished and has no checkpoint to resume from: choose another --out to train again",
        )
    published = (
        [p for p in paths.checkpoints.iterdir() if not _HALF_WRITTEN.fullmatch(p.name)]
        if paths.checkpoints.is_dir() and not paths.checkpoints.is_symlink()
        else []
    )
    first = paths.checkpoints / f"step-{first_checkpoint:06d}"
    if published == [first] and first.is_dir() and not first.is_symlink():
        if _before_first_checkpoint(paths.log, first_checkpoint) and paths.log.is_file():
            verify(first)  # killed between the rename that published it and LATEST: finish publishing
            _name_latest(paths, first)
            return first
    leftovers = paths.checkpoints.is_symlink() or bool(published)
    unfinished = paths.log.exists() or paths.log.is_symlink() or leftovers
    if unfinished and (leftovers or not _before_first_checkpoint(paths.log, first_checkpoint)):
        raise ManifestError(
            paths.log if paths.log.exists() else paths.checkpoints,
            f"an unfinished run without a checkpoint to resume from ({paths.checkpoints / 'LATEST'} is "
            f"missing); {FRESH}",
        )
    return None


def _before_first_checkpoint(log: Path, first_checkpoint: int) -> bool:
    """True when `log` is a plain file of step records, none past `first_checkpoint` (its last line may be
    cut short by the kill): the log of a run that never completed a checkpoint. It may hold that step
    itself: the kill came while its checkpoint was being saved."""
    if log.is_symlink() or not log.is_file():
        return not log.exists() and not log.is_symlink()
    lines = log.read_bytes().split(b"\n")
    for i, line in enumerate(lines):
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            if i == len(lines) - 1:  # the empty tail after the last newline, or a line cut by the kill
                continue
            return False
        if not isinstance(step, int) or step > first_checkpoint:
            return False
    return True


def discard(paths: RunPaths) -> list[Path]:
    """`--fresh`: what an unfinished run left (checkpoints/, the log) is removed and returned; a finished
    run (final/) is refused, never discarded."""
    if paths.final.exists() or paths.final.is_symlink():
        raise InputError(paths.final, None, "--fresh", "the run is finished; choose another --out")
    gone = []
    if paths.checkpoints.is_symlink() or paths.checkpoints.is_file():
        paths.checkpoints.unlink()
        gone.append(paths.checkpoints)
    elif paths.checkpoints.is_dir():
        shutil.rmtree(paths.checkpoints)
        gone.append(paths.checkpoints)
    if paths.log.exists() or paths.log.is_symlink():
        paths.log.unlink()
        gone.append(paths.log)
    return gone


def load(folder: Path, config_sha256: str | None = None) -> tuple[Any, TrainState]:
    """The checkpoint's model (fp32, from safetensors only) and training state, once verified."""
    from transformers import AutoModelForCausalLM

    step = verify(folder, config_sha256)
    state = read_state(folder)
    if state.step != step:
        raise ManifestError(folder / "state.json", f"step {state.step}, but the checkpoint is step {step}")
    model = AutoModelForCausalLM.from_pretrained(
        str(folder / "model"), dtype=torch.float32, use_safetensors=True
    )
    return model, state


def restart_log(paths: RunPaths, history: list[dict[str, Any]]) -> None:
    """The log restarts from the checkpoint's history: no step is logged twice."""
    with atomic_writer(paths.log) as fh:
        fh.writelines(json.dumps(h) + "\n" for h in history)
