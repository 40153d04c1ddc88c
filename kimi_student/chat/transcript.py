"""The transcript protocol (Hermes/Qwen style): tool calls, tool responses and integration spans.

    <tool_call>{"name": ..., "arguments": {...}}</tool_call>
    <tool_response>{json}</tool_response>
    Integration: a sentence stating what was taken from the tools.

Positions are character offsets into the text; `to_byte_spans` turns them into UTF-8 byte offsets.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kimi_student.fingerprint import json_encoder

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESP_OPEN, RESP_CLOSE = "<tool_response>", "</tool_response>"
INTEGRATION = "Integration:"
SPAN_CAP = 3

_RESP = re.compile(re.escape(RESP_OPEN) + r"(.*?)(?:" + re.escape(RESP_CLOSE) + r"|\Z)", re.S)
_WS = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Strict JSON: NaN and Infinity are refused (no canonical form, and no tool takes them).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def normalize_text(text: str) -> str:
    """NFC and LF line endings: the form every offset refers to."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


_ENCODER = json_encoder(ensure_ascii=False)  # json.dumps(..., ensure_ascii=False), set up once


def format_call(name: str, arguments: dict[str, Any]) -> str:
    return CALL_OPEN + _ENCODER({"name": name, "arguments": arguments}) + CALL_CLOSE


# Keys sorted: the ToolBroker replays results from fixture files, which hold canonical JSON (sorted keys),
# so the gold transcripts a student trains on must show tool results in that order too. With the
# generator's own order in training and sorted keys at eval, a trained teacher copied the field that now
# came first ("version 2026-07-25", the release date; a page's text as its title).
_RESPONSE_ENCODER = json_encoder(ensure_ascii=False, sort_keys=True)


def format_response(result: dict[str, Any]) -> str:
    """A tool result as the model reads it, the same bytes whoever formats it (generator, tool loop)."""
    return RESP_OPEN + _RESPONSE_ENCODER(result) + RESP_CLOSE


@dataclass
class ParsedCall:
    start: int  # of the whole <tool_call> block
    end: int
    name: str | None
    arguments: Any
    error: str | None  # why the call could not be parsed, if it could not
    name_span: tuple[int, int] | None  # the name's characters, quotes excluded
    args_span: tuple[int, int] | None  # the arguments' JSON value


@dataclass
class Transcript:
    text: str
    calls: list[ParsedCall]
    answer_start: int  # where the final answer begins
    spans: list[tuple[int, int]]  # integration spans (capped), character offsets

    def span_texts(self) -> list[str]:
        return [self.text[s:e] for s, e in self.spans]

    def model_text(self, replies: Sequence[dict[str, Any] | None] | None = None) -> str:
        """What the model wrote: the transcript without the harness's tool responses (`without_calls` of
        it: the prose it wrote).

        With `replies` (for each call, the result the harness answers it with, or None), a response block
        is the harness's only where it follows that call with nothing but whitespace between and its JSON
        equals that result (key order aside); any other block the model wrote itself, and it stays.
        Without, every block goes (gold text, whose responses the generator wrote)."""
        if replies is None:
            return _without_blocks(self.text, RESP_OPEN, RESP_CLOSE)
        pieces, pos = [], 0
        for call, reply in zip(self.calls, replies):
            if reply is None:
                continue
            m = _RESP.match(self.text, _WS.match(self.text, call.end).end())
            if m and m.group(0).endswith(RESP_CLOSE) and _json_equals(m.group(1), reply):
                pieces.append(self.text[pos : m.start()])
                pos = m.end()
        pieces.append(self.text[pos:])
        return "".join(pieces)


def _json_equals(text: str, value: Any) -> bool:
    try:
        return bool(_loads(text) == value)
    except (ValueError, RecursionError):
        return False


def _parse_call(text: str, start: int, end: int, closed: bool) -> ParsedCall:
    body_start = start + len(CALL_OPEN)
    body = text[body_start : end - len(CALL_CLOSE) if closed else end]
    call = ParsedCall(start, end, None, None, None, None, None)
    if not closed:
        call.error = "unterminated <tool_call>"
    try:
        obj = _loads(body)
    except json.JSONDecodeError as e:
        call.error = call.error or f"malformed JSON: {e.msg}"
        return call
    except (ValueError, RecursionError) as e:  # NaN, an integer over 4300 digits, nesting too deep
        call.error = call.error or f"malformed JSON: {_why(e)}"
        return call
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        call.error = call.error or "call has no string 'name'"
        return call
    call.name, call.arguments = obj["name"], obj.get("arguments", {})
    if isinstance(call.arguments, str):  # some servers send arguments as a JSON string
        try:
            call.arguments = _loads(call.arguments)
        except (ValueError, RecursionError):
            call.error = call.error or "arguments string is not JSON"
    try:
        keys = _top_level(body)
    except RecursionError:  # parsed just now, a frame shallower
        keys = {}
    if "name" in keys:
        s, e = keys["name"]
        call.name_span = (body_start + s + 1, body_start + e - 1)  # quotes excluded
    if "arguments" in keys:
        s, e = keys["arguments"]
        call.args_span = (body_start + s, body_start + e)
    return call


def _loads(text: str) -> Any:
    obj, end = _DECODER.raw_decode(text, _WS.match(text).end())
    if _WS.match(text, end).end() != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


def _why(e: BaseException) -> str:
    return "nested too deep" if isinstance(e, RecursionError) else str(e)[:200]


def _top_level(body: str) -> dict[str, tuple[int, int]]:
    """Where each key's value lies in `body`, a JSON object that parses: top-level keys only (a `name`
    inside the arguments is not the tool's name), the last of a repeated key (as json.loads keeps)."""
    spans: dict[str, tuple[int, int]] = {}
    pos = _WS.match(body).end() + 1  # past "{"
    while True:
        pos = _WS.match(body, pos).end()
        if body[pos] == "}":
            return spans
        key, pos = _DECODER.raw_decode(body, pos)
        pos = _WS.match(body, pos).end() + 1  # past ":"
        start = _WS.match(body, pos).end()
        _, pos = _DECODER.raw_decode(body, start)
        spans[key] = (start, pos)
        pos = _WS.match(body, pos).end()
        if body[pos] == ",":
            pos += 1


def integration_spans(text: str, start: int = 0, cap: int | None = SPAN_CAP) -> list[tuple[int, int]]:
    """Sentences beginning with `Integration:` after `start`, the first `cap` of them (all with None);
    each ends at a newline or the next one."""
    spans: list[tuple[int, int]] = []
    starts = _span_starts(text, start)
    for i, s in enumerate(starts[:cap]):
        stop = text.find("\n", s)
        stop = len(text) if stop < 0 else stop
        if i + 1 < len(starts):
            stop = min(stop, starts[i + 1])
        e = stop
        while e > s and text[e - 1].isspace():
            e -= 1
        spans.append((s, e))
    return spans


def _span_starts(text: str, start: int) -> list[int]:
    """Each `Integration:` from `start` on at the very beginning, after a newline or after a sentence end
    and a space: what `(?:^|(?<=\n)|(?<=[.!?] ))Integration:` finds, found with str.find (the pattern,
    led by lookbehinds, was tried at every character)."""
    out = []
    at = text.find(INTEGRATION, start)
    while at >= 0:
        if at == 0 or text[at - 1] == "\n" or (at >= 2 and text[at - 1] == " " and text[at - 2] in ".!?"):
            out.append(at)
        at = text.find(INTEGRATION, at + 1)
    return out


def _blocks(text: str, open_: str, close: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, closed) of each block as `_RESP` (or the same pattern for calls) matches it: from an
    opening tag to the first closing tag after it, or to the end of the text where none follows (closed
    False). Found with str.find; the pattern's lazy `.*?` tried the closing tag at every character."""
    at = text.find(open_)
    while at >= 0:
        stop = text.find(close, at + len(open_))
        end = len(text) if stop < 0 else stop + len(close)
        yield at, end, stop >= 0
        at = text.find(open_, end)


def without_calls(text: str) -> str:
    """`text` without its tool-call blocks."""
    return _without_blocks(text, CALL_OPEN, CALL_CLOSE)


def _without_blocks(text: str, open_: str, close: str) -> str:
    """`text` without its blocks (`_blocks`) of that tag."""
    kept, pos = [], 0
    for start, end, _ in _blocks(text, open_, close):
        kept.append(text[pos:start])
        pos = end
    kept.append(text[pos:])
    return "".join(kept)


def parse_transcript(text: str) -> Transcript:
    calls = [_parse_call(text, *block) for block in _blocks(text, CALL_OPEN, CALL_CLOSE)]
    # The final answer starts after the last tool call or tool response.
    resp_ends = [end for _, end, _ in _blocks(text, RESP_OPEN, RESP_CLOSE)]
    answer_start = max([c.end for c in calls] + resp_ends, default=0)
    return Transcript(text, calls, answer_start, integration_spans(text, answer_start))


def char_to_byte_offsets(text: str) -> list[int]:
    """offsets[i] = UTF-8 byte offset of character i (len(text)+1 entries)."""
    out = [0] * (len(text) + 1)
    n = 0
    for i, ch in enumerate(text):
        out[i] = n
        o = ord(ch)
        n += 1 if o < 0x80 else 2 if o < 0x800 else 3 if o < 0x10000 else 4
    out[len(text)] = n
    return out


def byte_offsets(text: str, positions: list[int]) -> dict[int, int]:
    """UTF-8 byte offset of each character position (a lone surrogate counts 3 bytes, as in
    `char_to_byte_offsets`), encoding only the text between the positions asked for."""
    if text.isascii():
        return {p: p for p in positions}
    out: dict[int, int] = {}
    at = n = 0
    for p in sorted(set(positions)):
        n += len(text[at:p].encode("utf-8", "surrogatepass"))
        at = p
        out[p] = n
    return out


def to_byte_spans(text: str, spans: list[tuple[int, int]]) -> list[list[int]]:
    table = byte_offsets(text, [p for span in spans for p in span])
    return [[table[s], table[e]] for s, e in spans]
