"""parse_transcript takes any text; its name and argument spans are the call's own (review tests.md M4)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import assume
from hypothesis import strategies as st

from kimi_student.chat import transcript
from kimi_student.chat.transcript import CALL_CLOSE, CALL_OPEN, RESP_CLOSE, RESP_OPEN, parse_transcript
from tests.props import tiers

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=10,
)
any_text = st.text(st.characters(exclude_categories=()), max_size=300)
pieces = st.sampled_from(
    [
        CALL_OPEN,
        CALL_CLOSE,
        "<tool_response>",
        "</tool_response>",
        "Integration: ",
        "\n",
        "{",
        '"name": "a"',
        "NaN",
        "]",
    ]
)


def check_any_text_parses(text: str) -> None:
    t = parse_transcript(text)
    assert 0 <= t.answer_start <= len(text)
    for s, e in t.spans:
        assert t.answer_start <= s <= e <= len(text)
    for c in t.calls:
        assert (c.name is None) == (c.error is not None) or c.error is not None
        for span in (c.name_span, c.args_span):
            assert span is None or c.start <= span[0] <= span[1] <= c.end


test_any_text_parses, test_any_text_parses_many = tiers(
    check_any_text_parses,
    text=st.one_of(any_text, st.lists(st.one_of(pieces, any_text), max_size=10).map("".join)),
)


def check_spans_are_the_calls_own(
    name: str, args: dict, extra: dict, name_first: bool, indent: int | None
) -> None:
    """Whatever the key order, spacing and other keys (a `name` inside the arguments included), name_span
    holds the name and args_span the arguments."""
    extra = {k: v for k, v in extra.items() if k not in ("name", "arguments")}
    obj = (
        {"name": name, "arguments": args, **extra}
        if name_first
        else {**extra, "arguments": args, "name": name}
    )
    body = json.dumps(obj, indent=indent, ensure_ascii=False)
    # A block ends at its first closing tag: the protocol has no escape for one inside a JSON string (a
    # model that writes it there ends its call there, as Hermes parsers read it), so such bodies are no case.
    assume(CALL_CLOSE not in body)
    text = "Sure.\n" + CALL_OPEN + body + CALL_CLOSE + "\nDone."
    (c,) = parse_transcript(text).calls
    assert c.error is None and c.name == name and c.arguments == args
    assert json.loads('"' + text[c.name_span[0] : c.name_span[1]] + '"') == name
    assert json.loads(text[c.args_span[0] : c.args_span[1]]) == args


test_spans_are_the_calls_own, test_spans_are_the_calls_own_many = tiers(
    check_spans_are_the_calls_own,
    name=st.text(max_size=12),
    args=st.dictionaries(st.sampled_from(["name", "arguments", "path", "q"]), json_values, max_size=4),
    extra=st.dictionaries(st.sampled_from(["name", "arguments", "id", "type"]), json_values, max_size=2),
    name_first=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
)


@pytest.mark.parametrize(
    "body, why",
    [
        ('{"name": "a", "arguments": {"x": NaN}}', "NaN is not JSON"),
        ('{"name": "a", "arguments": {"x": -Infinity}}', "-Infinity is not JSON"),
        ('{"name": "a", "arguments": {"x": ' + "1" * 4400 + "}}", "4300"),
        ('{"name": "a", "arguments": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deep"),
    ],
)
def test_json_the_scorer_cannot_hold_is_a_malformed_call(body: str, why: str) -> None:
    (c,) = parse_transcript(CALL_OPEN + body + CALL_CLOSE).calls
    assert c.name is None and c.error.startswith("malformed JSON") and why in c.error


def test_a_name_inside_the_arguments_is_not_the_tool_name() -> None:
    text = CALL_OPEN + '{"arguments": {"name": "foo", "arguments": 1}, "name": "read_file"}' + CALL_CLOSE
    (c,) = parse_transcript(text).calls
    assert text[c.name_span[0] : c.name_span[1]] == "read_file"
    assert json.loads(text[c.args_span[0] : c.args_span[1]]) == {"name": "foo", "arguments": 1}


# The patterns the str.find scans replaced (the module keeps _RESP, which model_text still matches with).
CALL_BLOCK = re.compile(re.escape(CALL_OPEN) + r"(.*?)(?:" + re.escape(CALL_CLOSE) + r"|\Z)", re.S)
SPAN_START = re.compile(r"(?:^|(?<=\n)|(?<=[.!?] ))" + re.escape("Integration:"))


def check_find_scans_match_the_patterns(text: str, start: int) -> None:
    """The str.find scans find what the block and span-start patterns find (they replaced them for speed)."""
    start = min(start, len(text))
    for rx, tags in (
        (CALL_BLOCK, (CALL_OPEN, CALL_CLOSE)),
        (transcript._RESP, (RESP_OPEN, RESP_CLOSE)),
    ):
        found = [(m.start(), m.end(), m.group(0).endswith(tags[1])) for m in rx.finditer(text)]
        assert list(transcript._blocks(text, *tags)) == found
    ends = [m.end() for rx in (transcript._RESP, CALL_BLOCK) for m in rx.finditer(text)]
    assert parse_transcript(text).answer_start == max(ends, default=0)
    assert transcript.Transcript(text, [], 0, []).model_text() == transcript._RESP.sub("", text)
    assert transcript._span_starts(text, start) == [m.start() for m in SPAN_START.finditer(text, start)]


span_pieces = st.sampled_from(["Integration:", "Integration", ". ", "! ", "? ", ".", " ", "\n", "x"])
test_find_scans_match_the_patterns, test_find_scans_match_the_patterns_many = tiers(
    check_find_scans_match_the_patterns,
    text=st.one_of(any_text, st.lists(st.one_of(pieces, span_pieces, any_text), max_size=12).map("".join)),
    start=st.integers(0, 320),
)
