"""Manifests: the sha256 of every file an artifact folder holds, so a reader can tell a tampered or
truncated file from the one that was written.

Two shapes share one file name and one writer. A training checkpoint's manifest is flat,
`{relative path: sha256}` over every file of the folder (`write_digests`, `verify_digests`). An
export's manifest is a document of its own schema (format, programs, packages or files, each entry with
its sha256) that the exporter builds and `export.verify` checks. Both are written whole or not at all,
as indented JSON with sorted keys and ASCII escapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kimi_student.errors import KimiStudentError
from kimi_student.fingerprint import sha256_file
from kimi_student.jsonl import atomic_writer

MANIFEST = "manifest.json"


class ManifestError(KimiStudentError):
    """A manifest that is missing or unreadable, or a file that differs from it: bad input, exit code 2.
    `where` names the manifest or the folder it describes."""

    def __init__(self, where: object, message: str):
        self.where = where
        super().__init__(f"{where}: {message}")


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> None:
    """Written whole or not at all: a reader never sees half a manifest."""
    with atomic_writer(path) as fh:
        fh.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(path, "manifest not found") from None
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, a huge integer
        raise ManifestError(path, f"unreadable manifest: {e}"[:300]) from None
    if not isinstance(manifest, dict):
        raise ManifestError(path, f"expected a JSON object, got {type(manifest).__name__}")
    return manifest


def package_entry(package: Path) -> dict[str, Any]:
    """The entry of an exported package in its folder's manifest."""
    path = package.parent / MANIFEST
    for e in read_manifest(path).get("packages", []):
        if isinstance(e, dict) and e.get("name") == package.name:
            return e
    raise ManifestError(path, f"lists no package {package.name}")


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (its own manifest aside), keyed by POSIX path relative to it."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p != folder / MANIFEST)
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


def write_digests(folder: Path) -> None:
    """The flat manifest of a checkpoint folder, written once every other file is in place."""
    write_manifest(folder / MANIFEST, file_digests(folder))


def verify_digests(folder: Path, kind: str) -> None:
    """Every file a flat manifest lists still has its sha256; `kind` names the folder in the error."""
    for rel, digest in read_manifest(folder / MANIFEST).items():
        if sha256_file(folder / rel) != digest:
            raise ManifestError(f"{kind} {folder}", f"{rel} does not match its sha256 in {MANIFEST}")
