"""Runners turn dataset items into transcripts. Model-backed runners (hf_local, openai_http, coreml)
plug in here with the same interface."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from kimi_student.errors import InputError, KimiStudentError
from kimi_student.fingerprint import sha256_file
from kimi_student.jsonl import read_jsonl


class Runner(Protocol):
    name: str
    model_fingerprint: str
    decoding: dict[str, Any]

    def outputs(self, items: list[dict[str, Any]]) -> Iterator[tuple[str, str | None]]:
        """(transcript, error or None) for each item, in order."""
        ...


class VerificationOnly:
    """Scores the dataset's own gold text: it proves the scorer, never a model."""

    name = "verification_only"
    decoding: dict[str, Any] = {"mode": "gold_text"}

    def __init__(self, dataset_sha256: str):
        self.model_fingerprint = f"verification_only:{dataset_sha256}"

    def outputs(self, items: list[dict[str, Any]]) -> Iterator[tuple[str, str | None]]:
        for it in items:
            yield it["teacher_text"], None


class Predictions:
    """Transcripts produced elsewhere: a JSONL of {"id", "output"}."""

    name = "predictions"
    decoding: dict[str, Any] = {"mode": "external"}

    def __init__(self, path: str | Path):
        p = Path(path)
        self.outputs_by_id: dict[str, str] = {}
        for line, row in read_jsonl(p):
            for fld in ("id", "output"):
                if fld not in row:
                    raise InputError(p, line, fld, "missing field")
                if not isinstance(row[fld], str):
                    raise InputError(p, line, fld, f"expected string, got {type(row[fld]).__name__}")
            if row["id"] in self.outputs_by_id:
                raise InputError(p, line, "id", f"duplicate id {row['id']!r}")
            self.outputs_by_id[row["id"]] = row["output"]
        self.path = p
        self.model_fingerprint = f"predictions:{sha256_file(p)}"

    def outputs(self, items: list[dict[str, Any]]) -> Iterator[tuple[str, str | None]]:
        known = {it["id"] for it in items}
        stray = sorted(set(self.outputs_by_id) - known)
        if stray:
            raise InputError(self.path, None, "id", f"{len(stray)} ids not in the dataset, e.g. {stray[0]!r}")
        for it in items:
            out = self.outputs_by_id.get(it["id"])
            yield (out, None) if out is not None else ("", "missing prediction")


def make_runner(name: str, dataset_sha256: str, predictions: str | None) -> Runner:
    if name == "verification_only":
        return VerificationOnly(dataset_sha256)
    if name == "predictions":
        if not predictions:
            raise KimiStudentError("--runner predictions needs --predictions FILE")
        return Predictions(predictions)
    raise KimiStudentError(f"unknown runner {name!r} (available: verification_only, predictions)")
