"""What a teacher is asked and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from kimi_student.fingerprint import sha256_json


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_logprobs: int = 20
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TeacherRequest:
    id: str
    messages: tuple[dict[str, str], ...]
    decoding: Decoding

    def key(self, teacher_id: str) -> str:
        """sha256 of the canonical request: the cache key (the item id is not part of it)."""
        return sha256_json(
            {"teacher": teacher_id, "messages": list(self.messages), "decoding": self.decoding.to_json()}
        )


@dataclass
class TeacherReply:
    text: str
    finish_reason: str | None = None
    token_ids: list[int] = field(default_factory=list)  # generated tokens (local vocabulary), if known
    topk_ids: list[list[int]] = field(default_factory=list)  # (T, K) per generated position
    topk_logprobs: list[list[float]] = field(default_factory=list)  # (T, K)
    logprob_temperature: float | None = None  # the temperature the logprobs were computed at
    usage: dict[str, int] = field(default_factory=dict)


class TeacherError(Exception):
    """A request that failed for good (after retries): recorded with its reason, never dropped."""


class Teacher(Protocol):
    id: str
    concurrency: int

    async def complete(self, request: TeacherRequest) -> TeacherReply: ...

    async def aclose(self) -> None: ...
