"""Manifests (kimi_student.manifest): the flat checkpoint manifest and the export manifest share one file
format, written whole, and a folder that differs from its manifest is refused naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kimi_student.fingerprint import sha256_file
from kimi_student.manifest import (
    MANIFEST,
    ManifestError,
    read_manifest,
    verify_digests,
    write_digests,
    write_manifest,
)


def test_write_manifest_is_sorted_indented_ascii_json(tmp_path: Path) -> None:
    doc = {"format": "torch.export", "checkpoint": "runs/é", "programs": [{"file": "seq8.pt2"}]}
    write_manifest(tmp_path / MANIFEST, doc)
    text = (tmp_path / MANIFEST).read_text(encoding="utf-8")
    assert text == json.dumps(doc, indent=2, sort_keys=True) + "\n"  # the bytes the exporters always wrote
    assert "\\u00e9" in text and read_manifest(tmp_path / MANIFEST) == doc
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST]  # no temp file left behind


def test_a_folder_that_differs_from_its_digests_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"hidden_size": 64}')
    (tmp_path / "state.pt").write_bytes(b"\0\1")
    write_digests(tmp_path)
    digests = read_manifest(tmp_path / MANIFEST)
    assert digests == {
        "model/config.json": sha256_file(tmp_path / "model" / "config.json"),
        "state.pt": sha256_file(tmp_path / "state.pt"),
    }
    verify_digests(tmp_path, "checkpoint")
    (tmp_path / "model" / "config.json").write_text('{"hidden_size":  64}')
    with pytest.raises(ManifestError, match=r"^checkpoint .*: model/config\.json does not match its sha256"):
        verify_digests(tmp_path, "checkpoint")


def test_a_missing_or_broken_manifest_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest.json: manifest not found"):
        read_manifest(tmp_path / MANIFEST)
    (tmp_path / MANIFEST).write_text("{oops")
    with pytest.raises(ManifestError, match="manifest.json: unreadable manifest"):
        read_manifest(tmp_path / MANIFEST)
