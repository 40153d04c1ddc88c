"""`contextual verify`: every problem kind it reports, each from a small crafted dataset (a clean generated
one with one item broken) that produces that problem and no other.

Three kinds cannot occur alone, by construction: metadata spans outside the text (span_bounds) or not on an
`Integration:` line (span_text) always also differ from the spans parsed from the text (span_offsets).
Breaks at the byte level
that move what token spans decode to are checked without the tokenizer. The CLI's exit 1 on any problem is tested in tests/integration/data/test_contextual.py."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from kimi_student.chat.transcript import char_to_byte_offsets, parse_transcript
from kimi_student.data.contextual import generate
from kimi_student.data.extract import extract_items
from kimi_student.data.verify import verify
from kimi_student.tokenizer import load_tokenizer
from kimi_student.tools.broker import ToolBroker
from kimi_student.tools.normalize import fixture_key

Item = dict[str, Any]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def clean(tok) -> tuple[dict, list[Item], dict]:
    header, items, fixtures = generate(60, 7)
    header = {**header, "tokenizer_fingerprint": tok.fingerprint}
    return header, extract_items(items, tok), fixtures


def _first(items: list[Item], pred: Callable[[Item], bool]) -> Item:
    return next(it for it in items if pred(it))


def _calls(it: Item) -> list[dict]:
    return it["metadata"]["call_sequence"]


def _tool_item(it: Item) -> bool:
    m = it["metadata"]
    return bool(m["call_sequence"]) and not m["negative_control"] and bool(m["integration_spans_bytes"])


def _set_text(it: Item, text: str) -> None:
    """New teacher_text with byte spans recomputed from it (so span_offsets stays quiet)."""
    it["teacher_text"] = text
    table = char_to_byte_offsets(text)
    it["metadata"]["integration_spans_bytes"] = [
        [table[s], table[e]] for s, e in parse_transcript(text).spans
    ]


def _edit_call(it: Item, old: str, new: str) -> None:
    """Replace `old` inside the first call's JSON (same length: no offset moves)."""
    assert len(old) == len(new)
    text = it["teacher_text"]
    at = text.index("<tool_call>")
    i = text.index(old, at)
    it["teacher_text"] = text[:i] + new + text[i + len(old) :]


def caws_header(items, header, fixtures):
    it = items[0]
    it["prompt"] = it["prompt"].replace("CAWS/1", "CAWS/0", 1)


def call_sequence(items, header, fixtures):
    # same-length tool name in the text only: the metadata, fixtures and spans still agree
    it = _first(items, lambda x: [c["name"] for c in _calls(x)][:1] == ["read_file"])
    _edit_call(it, '"read_file"', '"math.eval"')


def call_json(items, header, fixtures):
    it = _first(items, lambda x: [c["name"] for c in _calls(x)][:1] == ["read_file"])
    path = _calls(it)[0]["arguments"]["path"]
    _edit_call(it, json.dumps(path), json.dumps(("q" if path[0] != "q" else "r") + path[1:]))


def call_schema(items, header, fixtures):
    # an enum spelling the schema refuses but normalisation maps to the same fixture key
    it = _first(items, lambda x: [c["name"] for c in _calls(x)][:1] == ["code.execute"])
    args = _calls(it)[0]["arguments"]
    assert args["language"] == "python"
    args["language"] = "Python"
    _edit_call(it, '"python"', '"Python"')


def call_accept(items, header, fixtures):
    # a required argument marked as one a correct call may leave out
    call = next(c for it in items for c in _calls(it) if "accept" in c)
    call["accept"] = {next(iter(call["arguments"])): {"may_omit": True}}


def accept_fixture(items, header, fixtures):
    # the replay of an admitted alternative removed: a call the scorer accepts would find nothing
    from kimi_student.data.accept import accepted_arguments

    call = next(c for it in items for c in _calls(it) if "accept" in c)
    alt = next(accepted_arguments(call))
    del fixtures[(call["name"], fixture_key(call["name"], alt))]


def fixture_missing(items, header, fixtures):
    c = _calls(_first(items, _tool_item))[0]
    del fixtures[(c["name"], fixture_key(c["name"], c["arguments"]))]


def fixture_mismatch(items, header, fixtures):
    it = _first(items, _tool_item)
    it["metadata"]["tool_results"][0]["result"] = {**it["metadata"]["tool_results"][0]["result"], "extra": 1}


def span_offsets(items, header, fixtures):
    it = _first(items, _tool_item)
    it["metadata"]["integration_spans_bytes"][0][1] -= 1  # still an `Integration:` span, one byte short


def span_bounds(items, header, fixtures):
    it = _first(items, _tool_item)
    n = len(it["teacher_text"].encode("utf-8"))
    it["metadata"]["integration_spans_bytes"][-1] = [n - 2, n + 5]


def span_text(items, header, fixtures):
    it = _first(items, _tool_item)
    it["metadata"]["integration_spans_bytes"][0] = [0, 5]


def token_spans_missing(items, header, fixtures):
    del _first(items, _tool_item)["metadata"]["integration_spans_tokens"]


def token_align(items, header, fixtures):
    it = _first(items, _tool_item)
    ts, te = it["metadata"]["integration_spans_tokens"][0]
    it["metadata"]["integration_spans_tokens"][0] = [ts, te - 2]


def control(items, header, fixtures):
    it = _first(items, lambda x: x["metadata"]["expected_behaviour"] in ("no_tool", "decline"))
    _set_text(it, it["teacher_text"] + "\nIntegration: I also checked the weather.")


def no_integration(items, header, fixtures):
    it = _first(items, _tool_item)
    _set_text(it, it["teacher_text"].replace("Integration:", "Summary:"))


def privacy(items, header, fixtures):
    it = _first(items, _tool_item)
    it["teacher_text"] += "\nWrite to leak@example.com"  # after the last span: no offset moves


def call_underivable(items, header, fixtures):
    # the request no longer names the file the gold call reads
    it = _first(items, lambda x: [c["name"] for c in _calls(x)][:1] == ["read_file"])
    it["prompt"] = it["prompt"].replace(_calls(it)[0]["arguments"]["path"], "the config file")


def _train_item(id_: str, query: str | None = None) -> Item:
    calls = [{"name": "web.search", "arguments": {"query": query}}] if query else []
    results = [{"name": "web.search", "result": {"ok": True}}] if query else []
    meta = {"call_sequence": calls, "tool_results": results}
    return {"id": id_, "prompt": "", "teacher_text": "", "metadata": meta}


def heldout_leak(items, header, fixtures):
    # a training set that holds one value a call of these items uses (checked as a held-out set)
    it = _first(items, lambda x: [c["name"] for c in _calls(x)][:1] == ["read_file"])
    return [_train_item("train-1", _calls(it)[0]["arguments"]["path"])]


def heldout_id(items, header, fixtures):
    # a training set with an item of the same id (and no value in common)
    return [_train_item(items[0]["id"])]


def header_registry(items, header, fixtures):
    header["tool_registry_sha256"] = "0" * 64


def header_tokenizer(items, header, fixtures):
    header["tokenizer_fingerprint"] = "another-tokenizer"


# Byte-level breaks also move what the token spans decode to: those run without the token checks.
NO_TOKENS = {"call_json", "span_offsets", "span_bounds", "span_text"}

# kind -> (how to break the clean dataset, the problems verify must then report)
CASES: dict[str, tuple[Callable, dict[str, int]]] = {
    f.__name__: (f, extra)
    for f, extra in [
        (caws_header, {}),
        (call_sequence, {}),
        (call_json, {}),
        (call_schema, {}),
        (call_accept, {}),
        (accept_fixture, {}),
        (fixture_missing, {}),
        (fixture_mismatch, {}),
        (span_offsets, {}),
        (span_bounds, {"span_offsets": 1}),
        (span_text, {"span_offsets": 1}),
        (token_spans_missing, {}),
        (token_align, {}),
        (control, {}),
        (no_integration, {}),
        (privacy, {}),
        (call_underivable, {}),
        (heldout_leak, {}),
        (heldout_id, {}),
        (header_registry, {}),
        (header_tokenizer, {}),
    ]
}


def test_the_clean_dataset_has_no_problem(clean, tok) -> None:
    header, items, fixtures = clean
    rep = verify(header, items, ToolBroker(fixtures), tok)
    assert rep["ok"] and rep["problems"] == {}
    rep = verify(header, items, ToolBroker(fixtures), tok, train=[])  # checked as a held-out set
    assert rep["ok"] and rep["heldout_leaks"] == []


@pytest.mark.parametrize("kind", list(CASES))
def test_each_problem_kind_from_a_crafted_dataset(clean, tok, kind: str) -> None:
    header, items, fixtures = copy.deepcopy(clean)
    breaks, extra = CASES[kind]
    train = breaks(items, header, fixtures)  # a training set, for the held-out checks
    rep = verify(header, items, ToolBroker(fixtures), None if kind in NO_TOKENS else tok, train)
    assert not rep["ok"]
    assert rep["problems"] == {kind: 1, **extra}, rep["examples"]
    assert kind in rep["examples"]


def test_every_kind_verify_can_report_has_a_case() -> None:
    """A new `bad("...")` kind in data/verify.py needs its case here."""
    import re
    from pathlib import Path

    import kimi_student.data.verify as v

    src = Path(v.__file__).read_text(encoding="utf-8")
    kinds = set(re.findall(r'bad\(\s*"(\w+)"', src)) | set(re.findall(r'problems\["(\w+)"\]', src))
    assert kinds == set(CASES)
