"""What every runner is: its output per item, the spec that builds it in any process, and the protocol
the harness relies on. `RunnerSpec` is picklable so each worker process builds its own runner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from kimi_student.eval.runners.options import RunnerOptions

# The start of an item's error when its model could not be reached (no server, timeouts, retried
# statuses until the retries ran out): a resume asks such an item again instead of keeping the error.
TRANSIENT = "transient, asked again on resume: "


def transient(row: dict[str, Any]) -> bool:
    """A result row whose error is TRANSIENT."""
    return isinstance(row.get("error"), str) and row["error"].startswith(TRANSIENT)


@dataclass
class ItemOutput:
    text: str  # the transcript that is scored
    error: str | None = None  # why the item could not be run (it is then scored as an error)
    turns: list[dict[str, Any]] | None = None  # the messages exchanged, for model runners
    finish: str | None = None  # why decoding stopped: answer | max_turns | length | context | error


@dataclass(frozen=True)
class RunnerSpec:
    """Everything needed to build a runner, in any process (the dataset's sha256 is the run's: the
    harness passes it to `make_runner`)."""

    name: str
    predictions: str | None = None  # the predictions runner's JSONL
    options: RunnerOptions = field(default_factory=RunnerOptions)  # model runners: model, url, max_turns, ...


class Runner(Protocol):
    """Everything the harness uses of a runner."""

    name: str
    model_fingerprint: str
    decoding: dict[str, Any]  # what changes its output (in the report header)
    prompt_wrapper: str  # how items become prompts (its sha256 is in the report header)
    chunk: int  # items per output batch: scored, written and flushed together (progress and resume)

    def check_ids(self, dataset_ids: frozenset[str]) -> None:
        """Refuse outputs for items the dataset does not have (checked against all of it)."""
        ...

    def outputs(self, items: list[dict[str, Any]]) -> Iterator[ItemOutput]:
        """One output per item, in order."""
        ...

    def close(self) -> None: ...
