"""A checkpoint's sealed manifest: the sha256 of every file of the folder, sealed with the user's run key
(kimi_student.integrity) so that rewriting it after changing a file is caught.

    {"format": "kimi-student/train-checkpoint/2", "step": 20, "config_sha256": "...",
     "files": {"model/model.safetensors": "<sha256>", "state.json": "...", ...}, "seal": "<hmac hex>"}

The seal covers the canonical JSON of everything but itself, as the identity
"train-checkpoint <config_sha256> step-NNNNNN": a manifest moved to another step or claimed for another
training config no longer checks. `verify` treats the folder as untrusted input and refuses, with one
ManifestError line naming the file, a manifest that is missing, unreadable, of another shape or unsealed,
a file it lists that is missing or differs, a file it does not list, and any symlink.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kimi_student.fingerprint import canonical_json, sha256_file
from kimi_student.integrity import check_seal, seal
from kimi_student.manifest import MANIFEST, ManifestError, file_digests, read_manifest, write_manifest

FORMAT = "kimi-student/train-checkpoint/2"
KEYS = {"format", "step", "config_sha256", "files", "seal"}
FRESH = "rerun with --fresh to discard the run's checkpoints and log and start again"


def _identity(config_sha256: str, step: int) -> str:
    return f"train-checkpoint {config_sha256} step-{step:06d}"


def write(folder: Path, step: int, config_sha256: str) -> None:
    """The sealed manifest of `folder`, written once every other file is in place."""
    body = {"format": FORMAT, "step": step, "config_sha256": config_sha256, "files": file_digests(folder)}
    body["seal"] = seal(_identity(config_sha256, step), canonical_json(body).encode("utf-8"))
    write_manifest(folder / MANIFEST, body)


def verify(folder: Path, config_sha256: str | None = None) -> int:
    """The checkpoint's step, once its manifest is this user's seal and every file matches it; with
    `config_sha256`, the checkpoint must also belong to that training config."""
    path = folder / MANIFEST
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ManifestError(path, "not a regular file")
    body = read_manifest(path)
    _check_shape(path, body)
    mac = body.pop("seal")
    if not check_seal(
        _identity(body["config_sha256"], body["step"]), canonical_json(body).encode("utf-8"), mac
    ):
        raise ManifestError(
            path,
            "seal does not match: the manifest was changed after it was written, or it was sealed "
            f"with another run key (another user or machine); {FRESH}",
        )
    if folder.name != f"step-{body['step']:06d}":
        raise ManifestError(path, f"sealed for step-{body['step']:06d}, found in {folder.name}")
    if config_sha256 is not None and body["config_sha256"] != config_sha256:
        raise ManifestError(
            path,
            "written by a run with another training config (config, size or train: settings); resume with "
            f"the same ones, or {FRESH}",
        )
    _check_files(folder, body["files"])
    return body["step"]


def _check_shape(path: Path, body: Any) -> None:
    if not isinstance(body, dict):
        raise ManifestError(path, f"expected a JSON object, got {type(body).__name__}; {FRESH}")
    if body.get("format") != FORMAT or set(body) != KEYS:
        raise ManifestError(
            path, f"not a sealed checkpoint manifest ({FORMAT}: {', '.join(sorted(KEYS))}); {FRESH}"
        )
    step, files = body["step"], body["files"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise ManifestError(path, "step: expected a positive integer")
    if not isinstance(body["config_sha256"], str) or not isinstance(body["seal"], str):
        raise ManifestError(path, "config_sha256 and seal: expected strings")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ManifestError(path, "files: expected a mapping of relative path to sha256")


def _check_files(folder: Path, listed: dict[str, str]) -> None:
    """Exactly the listed files, each with its sha256; no symlink, no other file."""
    found: set[str] = set()
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            raise ManifestError(f"checkpoint {folder}", f"{rel} is a symlink")
        if p.is_file() and rel != MANIFEST:
            found.add(rel)
        elif not p.is_dir() and rel != MANIFEST:
            raise ManifestError(f"checkpoint {folder}", f"{rel} is not a regular file")
    missing, extra = sorted(set(listed) - found), sorted(found - set(listed))
    if missing:
        raise ManifestError(f"checkpoint {folder}", f"{missing[0]} is listed in {MANIFEST} but missing")
    if extra:
        raise ManifestError(f"checkpoint {folder}", f"{extra[0]} is not listed in {MANIFEST}")
    for rel in sorted(listed):
        if not re.fullmatch(r"[0-9a-f]{64}", listed[rel]) or sha256_file(folder / rel) != listed[rel]:
            raise ManifestError(f"checkpoint {folder}", f"{rel} does not match its sha256 in {MANIFEST}")
