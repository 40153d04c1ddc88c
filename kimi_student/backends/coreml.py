"""Core ML packages as `export coreml` writes them: which `seq<S>.mlpackage` files or which stateful
`decode<C>.mlpackage` a `--model` names, and the checkpoint folder (tokenizer and chat template) their
manifest points back to."""

from __future__ import annotations

import json
from pathlib import Path

from kimi_student.errors import InputError


def find_packages(model: Path) -> list[Path]:
    """One `.mlpackage`, or every `seq*.mlpackage` of a folder, in name order."""
    if model.suffix == ".mlpackage":
        pkgs = [model]
    elif model.is_dir():
        pkgs = sorted(model.glob("seq*.mlpackage"))
    else:
        pkgs = []
    if not pkgs or not all(p.is_dir() for p in pkgs):
        raise InputError(model, None, "model", "expected a seq<S>.mlpackage or a folder of them")
    return pkgs


def find_decoder(model: Path) -> Path | None:
    """The stateful decoder a `--model` names: the `decode<C>.mlpackage` itself, or the folder's one."""
    if model.suffix == ".mlpackage":
        return model if model.name.startswith("decode") else None
    found = sorted(model.glob("decode*.mlpackage")) if model.is_dir() else []
    if len(found) > 1:
        raise InputError(model, None, "model", f"{len(found)} decoder packages: name one of them")
    return found[0] if found else None


def manifest_checkpoint(manifest: Path) -> str:
    """The checkpoint folder a package manifest names (its `checkpoint` field)."""
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))["checkpoint"]
    except (OSError, ValueError, KeyError):
        raise InputError(
            manifest, None, "checkpoint", "no manifest names the checkpoint: pass --tokenizer"
        ) from None
