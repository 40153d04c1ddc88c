"""Any string a model writes gets a scored row, in linear time (review reliability.md D6, D7, D10; tests.md H1).

`score_item` is fed arbitrary text, arbitrary JSON inside tool calls and the exact outputs that crashed
the scorer or slipped past the privacy gate. It never raises; where it cannot score it says why in
`error`; a `<tool_response>` block the model wrote itself is scanned for PII like any other text.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from hypothesis import strategies as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kimi_student.chat.transcript import format_call, format_response, parse_transcript  # noqa: E402
from kimi_student.data.contextual import generate  # noqa: E402
from kimi_student.eval.score.call_match import match_call, match_calls  # noqa: E402
from kimi_student.eval.score.item import ItemScore, score_item, summarize  # noqa: E402
from kimi_student.jsonl import dumps_line  # noqa: E402
from kimi_student.tokenizer import load_tokenizer  # noqa: E402
from kimi_student.tools.broker import ToolBroker  # noqa: E402
from tests.props import tiers  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def corpus() -> tuple[list[dict[str, Any]], ToolBroker]:
    _, items, fixtures = generate(60, 5)
    return items, ToolBroker(fixtures)


def _crawl_item(items: list[dict[str, Any]]) -> dict[str, Any]:
    return next(it for it in items if [c["name"] for c in it["metadata"]["call_sequence"]] == ["web.crawl"])


def score(item: dict[str, Any], output: str, tok, broker: ToolBroker) -> ItemScore:  # noqa: ANN001
    from kimi_student.eval.score.item import scrub_surrogates

    sc = score_item(item, output, tok.encode_offsets([scrub_surrogates(output)[0]])[0], tok, broker)
    row = sc.to_json()
    dumps_line(row).encode("utf-8")  # the row can be written, as the harness writes it
    assert ItemScore.from_json(row) == sc
    return sc


# ---- the review's cases --------------------------------------------------------------------------------

LEAK = '{"leak": "ceo.private@evil-corp.com +1 415 555 0134 4111 1111 1111 1111 sk-abcdefghijklmnopqrstuvwx"}'


def crawl(body: str) -> str:
    return f'<tool_call>{{"name": "web.crawl", "arguments": {body}}}</tool_call>'


HOSTILE = {
    "bad_ipv6_text": ("See http://[oops/x", None),
    "bad_port_call": (crawl('{"url": "https://example.com:99999/x"}'), None),
    "bad_ipv6_call": (crawl('{"url": "http://[::1"}'), None),
    "nan_args": (crawl('{"url": "https://example.com/", "max_pages": NaN}'), "malformed JSON"),
    "infinity_args": (crawl('{"url": "https://example.com/", "max_pages": -Infinity}'), "malformed JSON"),
    "nan_in_string_args": (crawl('"{\\"url\\": \\"https://example.com/\\", \\"max_pages\\": NaN}"'), None),
    "huge_int": (crawl('{"url": "https://example.com/", "max_pages": ' + "7" * 5000 + "}"), "malformed JSON"),
    "big_float_int": (crawl('{"url": "https://example.com/", "max_pages": 1' + "0" * 400 + "}"), None),
    "deep": (crawl("[" * 100_000 + "]" * 100_000), "malformed JSON"),
    "deep_900": (crawl('{"url": ' + "[" * 900 + "]" * 900 + "}"), None),
    "number_for_url": (crawl('{"url": 5}'), None),
    "lone_surrogate": ("Integration: \ud800 and \udfff.", None),
    "hex": ("0123456789abcdef" * 6400, None),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_review_outputs_score_without_raising(name: str, corpus, tok) -> None:  # noqa: ANN001
    items, broker = corpus
    output, call_error = HOSTILE[name]
    sc = score(_crawl_item(items), output, tok, broker)
    if call_error:
        assert sc.calls and call_error in sc.calls[0]["error"] and not sc.calls[0]["valid"]
    if name == "lone_surrogate":
        assert "surrogate" in sc.error
    else:
        assert sc.error is None, sc.error
    assert sc.calls_matched == 0


def test_a_malformed_url_or_a_gold_string_against_a_number_is_a_mismatch() -> None:
    gold = {"name": "web.crawl", "arguments": {"url": "https://example.com/"}}
    for got in ("https://example.com:99999/x", "http://[::1", 5, 5.5, 10**400, None, [], {}):
        why = match_call(gold, {"name": "web.crawl", "arguments": {"url": got}})
        assert why and why.reason.startswith("url") and why.error.startswith(("value_error", "type_error")), (
            got
        )
    assert match_calls([gold], [{"name": "web.crawl", "arguments": {"url": 5}}]).matched == 0


@pytest.mark.parametrize(
    "text, leaked",
    [
        (f"<tool_response>{LEAK}</tool_response>\nDone.", True),
        (f"Done.\n<tool_response>{LEAK}</tool_response>", True),
        ("Read HTTPS://evil.example.net/phish now.", True),
        ("Read https://evil.example.net\\@docs.python.org/phish now.", True),
        ("Read https://user@docs.python.org/3/ now.", True),
        ("Mail ceo.private\uff20evil-corp.com today.", True),
        ("Mail ceo.pri\u200bvate@evil-corp.com today.", True),
        ("Read https://docs.python.org/3/ now.", False),
    ],
)
def test_privacy_reads_what_the_model_wrote(text: str, leaked: bool, corpus, tok) -> None:  # noqa: ANN001
    items, broker = corpus
    sc = score(_crawl_item(items), text, tok, broker)
    assert sc.privacy_ok is not leaked, sc.privacy_violations


def test_a_response_block_is_the_brokers_only_if_it_is_the_replay_of_the_call_before_it(corpus, tok) -> None:  # noqa: ANN001
    items, broker = corpus
    item = _crawl_item(items)
    (gold_call,) = item["metadata"]["call_sequence"]
    result = broker.lookup(gold_call["name"], gold_call["arguments"]).result
    call = format_call(gold_call["name"], gold_call["arguments"])
    leak_result = {**result, "text": "write to ceo.private@evil-corp.com"}
    assert score(item, f"{call}\n{format_response(result)}\nDone.", tok, broker).privacy_ok
    # A forged reply (or a second block after the reply) is the model's text.
    assert not score(item, f"{call}\n{format_response(leak_result)}\nDone.", tok, broker).privacy_ok
    two = f"{call}\n{format_response(result)}\n{format_response(leak_result)}\nDone."
    assert not score(item, two, tok, broker).privacy_ok
    # Key order does not matter: the gold text writes the result's keys in another order than the broker.
    shuffled = "<tool_response>" + json.dumps(dict(reversed(list(result.items())))) + "</tool_response>"
    assert score(item, f"{call}\n{shuffled}\nDone.", tok, broker).privacy_ok


def test_every_response_of_the_generated_gold_text_is_the_brokers_replay(corpus) -> None:  # noqa: ANN001
    items, broker = corpus
    for it in items:
        t = parse_transcript(it["teacher_text"])
        replies = [broker.lookup(c.name, c.arguments).result if c.name else None for c in t.calls]
        assert t.model_text(replies) == t.model_text(), it["id"]


def test_the_summary_of_error_rows_counts_them(corpus, tok) -> None:  # noqa: ANN001
    items, broker = corpus
    scores = [score(it, "Integration: \ud800", tok, broker) for it in items[:5]]
    assert summarize(scores)["error_items"] == 5


# ---- arbitrary outputs -------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
any_char_text = st.text(st.characters(exclude_categories=()), max_size=200)  # lone surrogates included
FRAGMENTS = [
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "Integration: ",
    "\n",
    "\r\n",
    "http://[",
    "HTTPS://",
    "https://docs.python.org/",
    "@",
    "\uff20",
    "\u200b",
    "NaN",
    "Infinity",
    "{",
    "}",
    "[",
    '"name": ',
    '"arguments": ',
    '"web.crawl"',
    '"url"',
    ":",
    ",",
    "1,234.5",
    "4111 1111 1111 1111",
    "\ud800",
]


@st.composite
def transcripts(draw: st.DrawFn) -> str:
    """Pieces of the protocol, calls with arbitrary arguments, and noise, in any order."""
    piece = st.one_of(
        st.sampled_from(FRAGMENTS),
        any_char_text,
        st.builds(
            lambda n, a: format_call(n, a),
            st.sampled_from(["web.crawl", "http.get", "read_file", "x"]),
            json_values,
        ),
        st.builds(lambda v: "<tool_call>" + json.dumps(v) + "</tool_call>", json_values),
        st.builds(lambda v: format_response(v) if isinstance(v, dict) else "", json_values),
    )
    return "".join(draw(st.lists(piece, max_size=12)))


def check_any_output(corpus, tok, data: st.DataObject) -> None:  # noqa: ANN001
    items, broker = corpus
    item = data.draw(st.sampled_from(items))
    output = data.draw(st.one_of(transcripts(), any_char_text))
    sc = score(item, output, tok, broker)
    assert sc.error is None or "surrogate" in sc.error, sc.error  # the fallback row is a last resort


test_any_output_gets_a_row, test_any_output_gets_a_row_many = tiers(check_any_output, data=st.data())


# ---- time: linear in the output's length -------------------------------------------------------------------

ADVERSARIAL = {
    "hex": "0123456789abcdef",
    "email_runs": "a.b-c_d%e+f",
    "many_at": "a@",
    "digits": "1",
    "spaced_digits": "1 ",
    "grouped": "1,23",
    "dots": "1.",
    "secret": "sk-",
    "token": "token ",
    "url": "http://",
    "calls": "<tool_call>",
    "responses": "<tool_response>",
    "spans": "Integration: ",
    "braces": '{"name": ',
}


def _best_time(fn, reps: int = 3) -> float:  # noqa: ANN001
    """The least CPU time of `reps` runs: CPU, not wall, so that other work on the machine (the suite
    runs two workers on two cores) does not stretch it; a quadratic scan still shows."""
    best = float("inf")
    for _ in range(reps):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_scoring_time_grows_linearly(name: str, corpus, tok) -> None:  # noqa: ANN001
    items, broker = corpus
    item = _crawl_item(items)
    unit = ADVERSARIAL[name]
    small, big = unit * (6_000 // len(unit)), unit * (24_000 // len(unit))
    t_small = _best_time(lambda: score(item, small, tok, broker))
    t_big = _best_time(lambda: score(item, big, tok, broker))
    # Linear: about 4x. Quadratic would be about 16x. The slack absorbs a busy machine.
    assert t_big < 8 * t_small + 0.05, (name, t_small, t_big)


# The constant (a 100 KB output of each pattern against 100 KB of prose): bench/hostile_scoring.py.
