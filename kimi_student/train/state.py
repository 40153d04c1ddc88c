"""A checkpoint's training state, in two files that cannot run code when read.

`state.safetensors` holds every tensor: AdamW's moments and step counts (`optimizer.<param>.<name>`) and
the torch RNG (`torch_rng`). `state.json` holds the rest: the step, the data stream's position, the loss
history and AdamW's param-group settings. safetensors is a JSON header and raw bytes, JSON is data:
reading either never unpickles, so a crafted state file is at worst refused. Both round-trip exactly (the
tensors bit for bit, the floats through `repr`), which keeps a resumed run equal to the uninterrupted one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kimi_student.manifest import ManifestError

TENSORS, META = "state.safetensors", "state.json"
FORMAT = "kimi-student/train-state/1"
RNG = "torch_rng"
_OPT_TENSOR = re.compile(r"optimizer\.(\d+)\.([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class TrainState:
    """What a checkpoint restores besides the model: the step to go on from and the training state."""

    step: int
    optimizer: dict[str, Any]  # torch's `optimizer.state_dict()`
    stream: dict[str, int]  # ExampleStream.state()
    history: list[dict[str, Any]]
    torch_rng: torch.Tensor


def write_state(folder: Path, state: TrainState) -> None:
    """state.safetensors and state.json in `folder` (a checkpoint's temp folder, published whole)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {RNG: state.torch_rng}
    values: dict[str, dict[str, Any]] = {}
    for pid, per_param in state.optimizer["state"].items():
        for name, v in per_param.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optimizer.{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                values.setdefault(str(pid), {})[name] = v
    meta = {
        "format": FORMAT,
        "step": state.step,
        "stream": state.stream,
        "history": state.history,
        "optimizer": {"param_groups": state.optimizer["param_groups"], "values": values},
    }
    save_file(tensors, str(folder / TENSORS))
    (folder / META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def read_state(folder: Path) -> TrainState:
    """The state `write_state` wrote; anything else is a ManifestError naming the file (exit code 2)."""
    tensors = _read_tensors(folder / TENSORS)
    meta = _read_meta(folder / META)
    rng = tensors.pop(RNG, None)
    if rng is None or rng.dtype != torch.uint8 or rng.dim() != 1:
        raise ManifestError(folder / TENSORS, f"no {RNG} byte tensor")
    opt: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        m = _OPT_TENSOR.fullmatch(key)
        if m is None:
            raise ManifestError(folder / TENSORS, f"unexpected tensor {key!r}")
        opt.setdefault(int(m[1]), {})[m[2]] = t
    for pid, vals in meta["optimizer"]["values"].items():
        opt.setdefault(int(pid), {}).update(vals)
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}  # betas
        for g in meta["optimizer"]["param_groups"]
    ]
    return TrainState(
        step=meta["step"],
        optimizer={"state": dict(sorted(opt.items())), "param_groups": groups},
        stream=meta["stream"],
        history=meta["history"],
        torch_rng=rng,
    )


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise ManifestError(path, "training state not found") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ManifestError(path, f"not a safetensors file ({e})") from None


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(path, "training state not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(path, f"unreadable training state: {e}") from None
    problem = _meta_problem(meta)
    if problem:
        raise ManifestError(path, problem)
    return meta


def _meta_problem(meta: Any) -> str | None:
    """What is wrong with a state.json's shape, or None."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return f"not a training state of format {FORMAT}"
    step, stream, opt = meta.get("step"), meta.get("stream"), meta.get("optimizer")
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        return "step: expected a positive integer"
    if not isinstance(stream, dict) or set(stream) != {"epoch", "pos"}:
        return "stream: expected {epoch, pos}"
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in stream.values()):
        return "stream: expected non-negative integers"
    history = meta.get("history")
    if not isinstance(history, list) or len(history) != step or not all(isinstance(h, dict) for h in history):
        return f"history: expected {step} records, one per step"
    if not isinstance(opt, dict) or not isinstance(opt.get("param_groups"), list):
        return "optimizer.param_groups: expected a list"
    if not all(isinstance(g, dict) for g in opt["param_groups"]) or not isinstance(opt.get("values"), dict):
        return "optimizer: expected param_groups of mappings and a values mapping"
    if not all(re.fullmatch(r"\d+", k) and isinstance(v, dict) for k, v in opt["values"].items()):
        return "optimizer.values: expected a mapping per parameter index"
    return None
