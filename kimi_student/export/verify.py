"""Check an export folder against its manifest.json, whichever exporter wrote it.

Every artifact is compared with the sha256 the exporter recorded; the first difference raises
CorruptArtifactError naming the file (for a Core ML package, the file inside the package).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kimi_student.export.errors import CorruptArtifactError
from kimi_student.fingerprint import sha256_file
from kimi_student.manifest import MANIFEST, read_manifest


def _check_file(path: Path, digest: str) -> None:
    if not path.is_file():
        raise CorruptArtifactError(path, "missing")
    have = sha256_file(path)
    if have != digest:
        raise CorruptArtifactError(path, f"sha256 {have[:12]}… differs from the manifest's {digest[:12]}…")


def verify_export(out: str | Path) -> dict[str, Any]:
    """Verify every artifact listed in out/manifest.json; returns the manifest."""
    out = Path(out)
    manifest = read_manifest(out / MANIFEST)
    fmt = manifest.get("format")
    if fmt == "coreml-mlprogram":
        from kimi_student.export.coreml import verify_package

        for entry in manifest["packages"]:
            verify_package(out / entry["name"], entry)
    elif fmt == "torch.export":
        for entry in manifest["programs"]:
            _check_file(out / entry["file"], entry["sha256"])
    elif fmt == "onnx":
        for entry in manifest["files"]:
            _check_file(out / entry["file"], entry["sha256"])
    else:
        raise CorruptArtifactError(out / MANIFEST, f"unknown format {fmt!r}")
    return manifest
