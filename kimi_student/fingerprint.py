"""SHA-256 fingerprints of canonical JSON, files and folders.

Every report header is built from these, so they must not depend on dict order, platform or locale.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterable
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from kimi_student import __version__
from kimi_student.integrity import ENV as RUN_KEY_ENV
from kimi_student.integrity import IntegrityError, check_seal, key_path, seal


def json_encoder(**options: Any) -> Callable[[Any], str]:
    """`json.JSONEncoder(**options).encode`, the same text, with its C encoder built once instead of on
    every call (for a small object that set-up is two thirds of the cost). It keeps no state between calls:
    no circular-reference check (JSON read from a file or built from it has no cycles; a cycle ends in
    RecursionError instead of ValueError), so it is safe from any thread and after any failed call."""
    enc = json.JSONEncoder(**options)
    if c_make_encoder is None or enc.indent is not None:
        return enc.encode
    run = c_make_encoder(
        None,
        enc.default,
        encode_basestring_ascii if enc.ensure_ascii else encode_basestring,
        None,
        enc.key_separator,
        enc.item_separator,
        enc.sort_keys,
        enc.skipkeys,
        enc.allow_nan,
    )
    return lambda obj: "".join(run(obj, 0))


_CANONICAL = json_encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(obj: Any) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept as is."""
    return _CANONICAL(obj)


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
    return sha256_file_sequence(sorted(Path(x) for x in paths), root)


def sha256_file_sequence(paths: Iterable[Path], root: Path | None = None) -> str:
    """Digest of (name relative to `root`, or the bare file name, and content digest) pairs in the order
    given, for files whose order means something (fixture folders by precedence). Where the files lie
    never enters the digest: only names, contents and order do."""
    h = hashlib.sha256()
    for p in map(Path, paths):
        name = p.relative_to(root).as_posix() if root else p.name
        h.update(f"{name}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def sha256_dir(folder: str | Path, pattern: str = "*") -> str:
    root = Path(folder)
    return sha256_files((p for p in root.rglob(pattern) if p.is_file()), root)


# ---- sealed memos: work done once per content, never trusted from another key -----------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("KIMI_STUDENT_CACHE", Path.home() / ".cache" / "kimi-student"))


def memo_read(path: Path, identity: str) -> str | None:
    """The value of a memo written by `memo_write` for `identity`, or None: missing, unreadable, edited,
    or sealed under another run key (another user or machine) are all the same to the caller, who works
    the value out again. `identity` must name the exact bytes the value was worked out from."""
    try:
        got = json.loads(path.read_text(encoding="utf-8"))
        value = got["value"]
        if isinstance(value, str) and check_seal(identity, value.encode("utf-8"), got["seal"]):
            return value
    except (OSError, ValueError, KeyError, TypeError, IntegrityError):
        pass
    return None


def memo_write(path: Path, identity: str, value: str) -> None:
    """Keep `value` for `identity`, sealed with the run key; only where a key is already set (a memo never
    makes one) and the folder can be written (a memo is an optimisation: without it a run goes on)."""
    if not (os.environ.get(RUN_KEY_ENV) or key_path().is_file()):
        return
    try:
        text = json.dumps({"value": value, "seal": seal(identity, value.encode("utf-8"))})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, IntegrityError):
        pass


# ---- model identity: which bytes name a model, chosen here for every caller ----------------------------


def model_folder_sha256(folder: str | Path) -> str:
    """Digest of every file of an HF folder: weights, config, tokenizer and chat template alike, since
    each changes what the model answers. The eval runners' model fingerprint (hf_local, the coreml
    runner's tokenizer, and openai_http when the served model is a local folder, so the same folder
    served over HTTP gets the same digest)."""
    folder = Path(folder)
    return sha256_files([f for f in folder.iterdir() if f.is_file()], folder)


def weights_sha256(folder: str | Path) -> str:
    """Digest of the files that define the model's function: config.json and the safetensors weights,
    not the tokenizer. An export manifest's `checkpoint_sha256`: the graphs exported from a folder
    depend on these bytes only."""
    folder = Path(folder)
    files = [folder / "config.json", *sorted(folder.glob("*.safetensors"))]
    return sha256_files([f for f in files if f.is_file()], folder)


def hf_teacher_id(folder: str | Path) -> str:
    """An in-process HF teacher's id: `hf:` and 16 hex of the first safetensors file's digest (a
    weightless folder: `hf:` and its absolute path). Short because it keys every KD cache entry and
    names the teacher in a KD dataset's header; the first weights file tells checkpoints apart."""
    folder = Path(folder)
    weights = sorted(folder.glob("*.safetensors"))
    return f"hf:{sha256_file(weights[0])[:16]}" if weights else f"hf:{folder.resolve()}"


def gguf_teacher_id(path: str | Path) -> str:
    """A GGUF teacher's id: `gguf:` and 16 hex of the file's digest (one file holds weights and tokenizer)."""
    return f"gguf:{sha256_file(path)[:16]}"


def embedded_teacher_id(folder: str | Path) -> str:
    """The embedded SmolLM2 teacher's id: `smollm2:` and its cached folder's name, which already carries
    16 hex of the source GGUF's digest (`smollm2-<sha16>`)."""
    return f"smollm2:{Path(folder).name}"


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
