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
class ForcedSequence:
    """A conversation to score, not to answer (teacher forcing): the exact token ids the student trains
    on (its prompt, assistant turns and tool responses), and the [start, end) spans of the assistant turns,
    the only positions whose top-k log-probs are kept. `text` is the gold transcript the ids come from."""

    text: str
    token_ids: tuple[int, ...]
    segments: tuple[tuple[int, int], ...]
    wrapper: str  # the prompt wrapper of the messages (chat.prompt): the trainer checks it is its own
    tokenizer_sha256: str  # the tokenizer that made the ids: the student's must be the same one
    precision: str = "no"  # the teacher's forward: "no" (fp32) or "bf16" autocast

    def positions(self) -> list[int]:
        return [j for a, b in self.segments for j in range(a, b)]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "token_ids": list(self.token_ids),
            "segments": [list(s) for s in self.segments],
        }


@dataclass(frozen=True)
class TeacherRequest:
    id: str
    messages: tuple[dict[str, str], ...]
    decoding: Decoding
    forced: ForcedSequence | None = None  # set: score this sequence (Teacher.score), do not generate

    def key(self, teacher_id: str) -> str:
        """sha256 of the canonical request: the cache key (the item id is not part of it)."""
        req = {"teacher": teacher_id, "messages": list(self.messages), "decoding": self.decoding.to_json()}
        if self.forced is not None:  # a generation request's key is what it always was
            req["teacher_forced"] = self.forced.to_json()
        return sha256_json(req)


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


class ScoringTeacher(Teacher, Protocol):
    """A teacher that also scores given sequences (in process: one forward over a padded batch)."""

    batch_size: int

    def score(self, requests: list[TeacherRequest]) -> list[TeacherReply]: ...
