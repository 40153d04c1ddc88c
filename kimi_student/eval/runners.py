"""Runners turn dataset items into transcripts. Model-backed runners (hf_local, openai_http, coreml)
plug in here with the same interface; `RunnerSpec` is picklable so each worker process builds its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kimi_student.errors import InputError, KimiStudentError
from kimi_student.fingerprint import sha256_file
from kimi_student.jsonl import read_jsonl
from kimi_student.tools.broker import ToolBroker


@dataclass
class ItemOutput:
    text: str  # the transcript that is scored
    error: str | None = None  # why the item could not be run (it is then scored as an error)
    turns: list[dict[str, Any]] | None = None  # the messages exchanged, for model runners
    finish: str | None = None  # why decoding stopped: answer | max_turns | length | context | error


@dataclass(frozen=True)
class RunnerSpec:
    """Everything needed to build a runner, in any process."""

    name: str
    dataset_sha256: str
    predictions: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # model runners: model, url, max_turns, ...


class Runner(Protocol):
    name: str
    model_fingerprint: str
    decoding: dict[str, Any]

    def outputs(self, items: list[dict[str, Any]]) -> Iterator[ItemOutput]:
        """One output per item, in order."""
        ...

    def close(self) -> None: ...


class VerificationOnly:
    """Scores the dataset's own gold text: it proves the scorer, never a model."""

    name = "verification_only"
    decoding: dict[str, Any] = {"mode": "gold_text"}

    def __init__(self, dataset_sha256: str):
        self.model_fingerprint = f"verification_only:{dataset_sha256}"

    def outputs(self, items: list[dict[str, Any]]) -> Iterator[ItemOutput]:
        for it in items:
            yield ItemOutput(it["teacher_text"])

    def close(self) -> None:
        pass


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


def make_runner(spec: RunnerSpec, broker: ToolBroker) -> Runner:
    """`broker` replays the calls of model runners' tool loops (the scorer's broker: lookups only)."""
    if spec.name == "verification_only":
        return VerificationOnly(spec.dataset_sha256)
    if spec.name == "predictions":
        if not spec.predictions:
            raise KimiStudentError("--runner predictions needs --predictions FILE")
        return Predictions(spec.predictions)
    from kimi_student.eval.model_runner import MODEL_RUNNERS, ModelRunner

    if spec.name in MODEL_RUNNERS:
        return ModelRunner(spec.name, spec.options, broker)
    known = ", ".join(("verification_only", "predictions", *MODEL_RUNNERS))
    raise KimiStudentError(f"unknown runner {spec.name!r} (available: {known})")
