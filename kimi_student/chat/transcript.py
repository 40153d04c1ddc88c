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
from dataclasses import dataclass
from typing import Any

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESP_OPEN, RESP_CLOSE = "<tool_response>", "</tool_response>"
INTEGRATION = "Integration:"
SPAN_CAP = 3

_CALL = re.compile(re.escape(CALL_OPEN) + r"(.*?)(?:" + re.escape(CALL_CLOSE) + r"|\Z)", re.S)
_RESP = re.compile(re.escape(RESP_OPEN) + r".*?(?:" + re.escape(RESP_CLOSE) + r"|\Z)", re.S)
_SPAN_START = re.compile(r"(?:^|(?<=\n)|(?<=[.!?] ))" + re.escape(INTEGRATION))
_NAME = re.compile(r'"name"\s*:\s*')
_ARGS = re.compile(r'"arguments"\s*:\s*')
_DECODER = json.JSONDecoder()


def normalize_text(text: str) -> str:
    """NFC and LF line endings: the form every offset refers to."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


def format_call(name: str, arguments: dict[str, Any]) -> str:
    return CALL_OPEN + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + CALL_CLOSE


def format_response(result: dict[str, Any]) -> str:
    return RESP_OPEN + json.dumps(result, ensure_ascii=False) + RESP_CLOSE


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

    def model_text(self) -> str:
        """What the model wrote: the transcript without the harness's tool responses."""
        return _RESP.sub("", self.text)


def _parse_call(m: re.Match[str]) -> ParsedCall:
    body_start = m.start(1)
    body = m.group(1)
    closed = m.group(0).endswith(CALL_CLOSE)
    call = ParsedCall(m.start(), m.end(), None, None, None, None, None)
    if not closed:
        call.error = "unterminated <tool_call>"
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        call.error = call.error or f"malformed JSON: {e.msg}"
        return call
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        call.error = call.error or "call has no string 'name'"
        return call
    call.name, call.arguments = obj["name"], obj.get("arguments", {})
    if isinstance(call.arguments, str):  # some servers send arguments as a JSON string
        try:
            call.arguments = json.loads(call.arguments)
        except json.JSONDecodeError:
            call.error = call.error or "arguments string is not JSON"
    nm = _NAME.search(body)
    if nm and body[nm.end() : nm.end() + 1] == '"':
        s = nm.end() + 1
        _, e = _DECODER.raw_decode(body, nm.end())
        call.name_span = (body_start + s, body_start + e - 1)
    am = _ARGS.search(body)
    if am:
        _, e = _DECODER.raw_decode(body, am.end())
        call.args_span = (body_start + am.end(), body_start + e)
    return call


def integration_spans(text: str, start: int = 0, cap: int = SPAN_CAP) -> list[tuple[int, int]]:
    """Sentences beginning with `Integration:` after `start`; each ends at a newline or the next one."""
    spans: list[tuple[int, int]] = []
    starts = [m.start() for m in _SPAN_START.finditer(text, start)]
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


def parse_transcript(text: str) -> Transcript:
    calls = [_parse_call(m) for m in _CALL.finditer(text)]
    # The final answer starts after the last tool call or tool response.
    ends = [m.end() for rx in (_RESP, _CALL) for m in rx.finditer(text)]
    answer_start = max(ends, default=0)
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


def to_byte_spans(text: str, spans: list[tuple[int, int]]) -> list[list[int]]:
    if text.isascii():
        return [[s, e] for s, e in spans]
    table = char_to_byte_offsets(text)
    return [[table[s], table[e]] for s, e in spans]
