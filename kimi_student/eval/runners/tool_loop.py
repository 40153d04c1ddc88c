"""The tool loop: the model writes, a closed `<tool_call>` is replayed by the ToolBroker, its
`<tool_response>` is appended as a `tool` message, and the model goes on, until it answers without a
call or `max_turns` model turns have run. Conversations advance in lockstep so a generator can batch them.

The scored transcript is every model turn and tool response joined by newlines, the form of the
dataset's gold text. One call per turn: generation stops at the first `</tool_call>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kimi_student.chat.transcript import CALL_CLOSE, format_response, parse_transcript
from kimi_student.eval.runners.base import ItemOutput
from kimi_student.tools.broker import ToolBroker

Messages = list[dict[str, Any]]


@dataclass
class Generation:
    text: str
    finish: str = "stop"  # stop (a stop token or string) | length (max_new_tokens) | context (model full)
    error: str | None = None  # the request failed for good (after retries)


class Generator(Protocol):
    """One model turn for each conversation (greedy); the text ends at the first `</tool_call>`."""

    fingerprint: str

    def generate(self, conversations: list[Messages]) -> list[Generation]: ...

    def close(self) -> None: ...


def first_call_turn(text: str) -> str:
    """The turn up to and including the first `</tool_call>` (what a stop string leaves)."""
    cut = text.find(CALL_CLOSE)
    return text if cut < 0 else text[: cut + len(CALL_CLOSE)]


def run_tool_loop(
    generator: Generator, broker: ToolBroker, conversations: list[Messages], max_turns: int
) -> list[ItemOutput]:
    """Drive every conversation to a final answer, an error or `max_turns`. The broker only looks up
    (scoring replays the transcript's calls and counts them there); a call that does not parse gets an
    error response, as a real tool would give, and the model goes on."""
    convs = [list(c) for c in conversations]
    finish: list[str] = ["max_turns"] * len(convs)
    errors: list[str | None] = [None] * len(convs)
    active = list(range(len(convs)))
    for _ in range(max_turns):
        if not active:
            break
        gens = generator.generate([convs[i] for i in active])
        still = []
        for i, g in zip(active, gens, strict=True):
            if g.error is not None:
                errors[i], finish[i] = g.error, "error"
                continue
            text = first_call_turn(g.text)
            convs[i].append({"role": "assistant", "content": text})
            calls = parse_transcript(text).calls
            if not calls or not text.endswith(CALL_CLOSE):
                finish[i] = "answer" if g.finish == "stop" else g.finish
                continue
            call = calls[0]
            if call.name is None:  # a closed call that does not parse: the model is told, as a tool would
                result: dict[str, Any] = {"ok": False, "error": "malformed_call", "message": call.error}
            else:
                result = broker.lookup(call.name, call.arguments).result
            convs[i].append({"role": "tool", "content": format_response(result)})
            still.append(i)
        active = still
    outs = []
    for conv, start, err, fin in zip(convs, conversations, errors, finish, strict=True):
        turns = conv[len(start) :]  # what the loop added: model turns and tool responses
        outs.append(ItemOutput("\n".join(m["content"] for m in turns), err, turns, fin))
    return outs
