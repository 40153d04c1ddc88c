"""Runners without a model: the dataset's gold text (proves the scorer) and predictions made elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kimi_student.errors import InputError
from kimi_student.eval.runners.base import ItemOutput
from kimi_student.fingerprint import sha256_file
from kimi_student.jsonl import read_jsonl

BATCH = 64  # items scored, written and flushed together: the most a kill can lose


class VerificationOnly:
    """Scores the dataset's own gold text: it proves the scorer, never a model."""

    name = "verification_only"
    decoding: dict[str, Any] = {"mode": "gold_text"}
    prompt_wrapper = "system"  # no prompt is built; the header names the default wrapper
    chunk = BATCH

    def __init__(self, dataset_sha256: str):
        self.model_fingerprint = f"verification_only:{dataset_sha256}"

    def check_ids(self, dataset_ids: frozenset[str]) -> None:
        """Its outputs are the dataset's own items."""

    def outputs(self, items: list[dict[str, Any]]) -> Iterator[ItemOutput]:
        for it in items:
            yield ItemOutput(it["teacher_text"])

    def close(self) -> None:
        pass


class Predictions:
    """Transcripts produced elsewhere: a JSONL of {"id", "output"}."""

    name = "predictions"
    decoding: dict[str, Any] = {"mode": "external"}
    prompt_wrapper = "system"  # prompted elsewhere; the header names the default wrapper
    chunk = BATCH

    def __init__(self, path: str | Path):
        p = Path(path)
        self.outputs_by_id: dict[str, str] = {}
        for line, row in read_jsonl(p, model_text=("output",)):
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

    def check_ids(self, dataset_ids: frozenset[str]) -> None:
        """Every prediction must belong to the dataset (checked against all of it: a worker or a shard
        scores only some of its items)."""
        stray = sorted(set(self.outputs_by_id) - dataset_ids)
        if stray:
            raise InputError(self.path, None, "id", f"{len(stray)} ids not in the dataset, e.g. {stray[0]!r}")

    def outputs(self, items: list[dict[str, Any]]) -> Iterator[ItemOutput]:
        for it in items:
            out = self.outputs_by_id.get(it["id"])
            yield ItemOutput(out) if out is not None else ItemOutput("", "missing prediction")

    def close(self) -> None:
        pass
