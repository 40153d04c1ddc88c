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


_ENTRIES = {  # format -> (the list of artifacts, the fields each entry needs and their types)
    "coreml-mlprogram": ("packages", (("name", str), ("files", dict))),
    "torch.export": ("programs", (("file", str), ("sha256", str))),
    "onnx": ("files", (("file", str), ("sha256", str))),
}


def manifest_entries(manifest: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The artifact entries of an export manifest, each with the fields its format needs; anything else
    is CorruptArtifactError naming the manifest and the field (a list, no `packages`, a bad entry)."""
    fmt = manifest.get("format")
    if fmt not in _ENTRIES:
        raise CorruptArtifactError(path, f"unknown format {fmt!r}")
    key, fields = _ENTRIES[fmt]
    entries = manifest.get(key)
    if not isinstance(entries, list):
        raise CorruptArtifactError(path, f"{key}: missing or not a list")
    for i, entry in enumerate(entries):
        for name, typ in fields:
            if not isinstance(entry, dict) or not isinstance(entry.get(name), typ):
                raise CorruptArtifactError(path, f"{key}[{i}].{name}: missing or not a {typ.__name__}")
    return entries


def verify_export(out: str | Path) -> dict[str, Any]:
    """Verify every artifact listed in out/manifest.json; returns the manifest."""
    out = Path(out)
    manifest = read_manifest(out / MANIFEST)
    entries = manifest_entries(manifest, out / MANIFEST)
    if manifest["format"] == "coreml-mlprogram":
        from kimi_student.export.coreml import verify_package

        for entry in entries:
            verify_package(out / entry["name"], entry)
    else:
        for entry in entries:
            _check_file(out / entry["file"], entry["sha256"])
    return manifest


def verify_packages(packages: list[Path]) -> None:
    """What `export verify` checks, for the packages an eval runs: each against its entry in the manifest
    beside it, so a package whose files changed is refused before it runs (it used to run, with only a
    changed model fingerprint to tell). Packages with no manifest beside them have nothing to check."""
    from kimi_student.export.coreml import verify_package

    for folder in dict.fromkeys(p.parent for p in packages):
        path = folder / MANIFEST
        if not path.exists():
            continue
        manifest = read_manifest(path)
        if manifest.get("format") != "coreml-mlprogram":
            raise CorruptArtifactError(
                path, f"not a Core ML export manifest (format {manifest.get('format')!r})"
            )
        entries = {e["name"]: e for e in manifest_entries(manifest, path)}
        for p in packages:
            if p.parent != folder:
                continue
            if p.name not in entries:
                raise CorruptArtifactError(p, f"not listed in {path}")
            verify_package(p, entries[p.name])
