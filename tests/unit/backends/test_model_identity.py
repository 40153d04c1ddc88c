"""The named model fingerprints of fingerprint.py, pinned: they are in reports, KD datasets and export
manifests, so the same files must keep giving the same bytes (values computed at c6a19a1, before the
functions moved here from chat.template, export.torch_export and teachers.hf_local)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimi_student.fingerprint import (
    embedded_teacher_id,
    gguf_teacher_id,
    hf_teacher_id,
    model_folder_sha256,
    weights_sha256,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    f = tmp_path / "ckpt"
    (f / "sub").mkdir(parents=True)
    for name, data in {
        "config.json": '{"a": 1}',
        "model-00001-of-00002.safetensors": "weights-1",
        "model-00002-of-00002.safetensors": "weights-2",
        "tokenizer.json": "tok",
        "chat_template.jinja": "tpl",
        "sub/ignored": "x",
    }.items():
        (f / name).write_text(data)
    return f


def test_the_fingerprints_keep_their_bytes(folder: Path, tmp_path: Path) -> None:
    assert model_folder_sha256(folder) == "e4148a6e6e393a466b217354b95ce188f71f54108e4b6d9b9bafc93757e2df87"
    assert weights_sha256(folder) == "11c33e1bb939570cf1f1debcd507f770ac9eb5d0b36c2f08f90e4c620d0107bf"
    assert hf_teacher_id(folder) == "hf:d6d6b238a083cd70"
    (tmp_path / "m.gguf").write_text("gguf-bytes")
    assert gguf_teacher_id(tmp_path / "m.gguf") == "gguf:8cf68e2e6501e736"
    assert embedded_teacher_id(tmp_path / "smollm2-b179c9523d0e6a0f") == "smollm2:smollm2-b179c9523d0e6a0f"


def test_what_each_fingerprint_covers(folder: Path) -> None:
    before = (model_folder_sha256(folder), weights_sha256(folder), hf_teacher_id(folder))
    (folder / "tokenizer.json").write_text("another tokenizer")  # changes answers, not the exported graphs
    assert model_folder_sha256(folder) != before[0] and weights_sha256(folder) == before[1]
    after_tok = model_folder_sha256(folder)
    (folder / "sub" / "ignored").write_text("y")  # subfolders are no part of a model folder
    assert model_folder_sha256(folder) == after_tok
    (folder / "model-00002-of-00002.safetensors").write_text(
        "weights-2b"
    )  # only the first file names a teacher
    assert weights_sha256(folder) != before[1] and hf_teacher_id(folder) == before[2]
    (folder / "config.json").write_text('{"a": 2}')
    assert hf_teacher_id(folder) == before[2] and weights_sha256(folder) != before[1]


def test_a_weightless_folder_is_named_by_its_path(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert hf_teacher_id(tmp_path) == f"hf:{tmp_path.resolve()}"
