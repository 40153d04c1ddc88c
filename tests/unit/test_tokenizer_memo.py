"""The tokenizer's memos (its fingerprint, the GGUF's digest) save the parent of an eval a fifth of a second,
and must never certify other bytes than the file's: a stale, edited or foreign memo is worked out again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from kimi_student import tokenizer as tk
from kimi_student.fingerprint import sha256_file, sha256_json
from kimi_student.integrity import ENV, seal

RAW = json.dumps({"model": {"vocab": {"b": 1, "a": 0}}, "version": "1.0"}, indent=1)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KIMI_STUDENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tk, "_MEMO_MIN_CHARS", 0)  # memoise even this small text
    seal("make the key", b"")  # eval always has a key by now
    return tmp_path / "cache" / "tokenizers"


def test_fingerprint_memo_is_used_and_a_tampered_one_is_not(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    true = sha256_json(json.loads(RAW))
    assert tk._fingerprint(RAW) == true
    (memo,) = cache.glob("fingerprint-*.json")
    sealed = json.loads(memo.read_text())
    assert sealed["value"] == true
    monkeypatch.setattr(tk, "sha256_json", lambda obj: "recomputed")  # what a memo hit never calls
    assert tk._fingerprint(RAW) == true
    memo.write_text(json.dumps({**sealed, "value": "0" * 64}))  # edited, seal kept
    assert tk._fingerprint(RAW) == "recomputed"
    monkeypatch.setenv(ENV, "ab" * 16)  # a memo sealed under another key (another user or machine)
    memo.write_text(json.dumps(sealed))
    assert tk._fingerprint(RAW) == "recomputed"
    assert tk._fingerprint(RAW + " ") == "recomputed"  # other bytes: another memo


def test_file_digest_follows_the_file(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "model.gguf"
    f.write_bytes(b"one")
    assert tk._file_digest(f) == sha256_file(f)
    assert not list(cache.glob("digest-*.json"))  # just written: not settled, so not memoised
    monkeypatch.setattr(tk, "SETTLED_NS", 0)
    assert tk._file_digest(f) == sha256_file(f)
    assert len(list(cache.glob("digest-*.json"))) == 1
    st = f.stat()
    time.sleep(0.02)  # past the file clock's tick (the SETTLED_NS wait, shortened)
    f.write_bytes(b"two")  # same size, and its mtime set back: the ctime still moves
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tk._file_digest(f) == sha256_file(f) != tk.sha256_bytes(b"one")
