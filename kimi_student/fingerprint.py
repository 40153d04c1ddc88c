"""SHA-256 fingerprints of canonical JSON, files and folders.

Every report header is built from these, so they must not depend on dict order, platform or locale.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kimi_student import __version__


def canonical_json(obj: Any) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(canonical_json(obj).encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: Iterable[Path], root: Path | None = None) -> str:
    """Digest of (relative name, content digest) pairs, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        name = p.relative_to(root).as_posix() if root else p.name
        h.update(f"{name}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def sha256_dir(folder: str | Path, pattern: str = "*") -> str:
    root = Path(folder)
    return sha256_files((p for p in root.rglob(pattern) if p.is_file()), root)


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (never null)."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if rev.returncode == 0 and rev.stdout.strip():
            return f"{__version__}+g{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__
