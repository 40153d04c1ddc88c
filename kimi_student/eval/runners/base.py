"""What every runner is: its output per item, the spec that builds it in any process, and the protocol
the harness relies on. `RunnerSpec` is picklable so each worker process builds its own runner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


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
