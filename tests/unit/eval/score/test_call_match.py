"""call_accuracy's matching rules (kimi_student/eval/call_match.py), one table row per rule."""

from __future__ import annotations

import pytest

from kimi_student.eval.score.call_match import match_call, match_calls

WS = {"name": "web.search", "arguments": {"query": "Python JSON", "top_k": 3}}
CASES = [
    # (id, expected, emitted, matches, reason fragment)
    ("exact", WS, WS, True, ""),
    ("dot_underscore_alike", WS, {"name": "web_search", "arguments": WS["arguments"]}, True, ""),
    ("other_name", WS, {"name": "web.crawl", "arguments": WS["arguments"]}, False, "name"),
    (
        "string_case_and_space",
        WS,
        {"name": "web.search", "arguments": {"query": " python   json", "top_k": 3}},
        True,
        "",
    ),
    (
        "string_differs",
        WS,
        {"name": "web.search", "arguments": {"query": "python yaml", "top_k": 3}},
        False,
        "query",
    ),
    ("missing_required", WS, {"name": "web.search", "arguments": {"top_k": 3}}, False, "query: required"),
    (
        "unexpected_argument",
        WS,
        {"name": "web.search", "arguments": {**WS["arguments"], "page": 2}},
        False,
        "page: unexpected",
    ),
    (
        "int_as_string_rejected",
        WS,
        {"name": "web.search", "arguments": {"query": "python json", "top_k": "3"}},
        False,
        "top_k: expected integer",
    ),
    (
        "bool_is_not_a_number",
        {"name": "code.execute", "arguments": {"language": "python", "code": "x", "timeout_s": 1}},
        {"name": "code.execute", "arguments": {"language": "python", "code": "x", "timeout_s": True}},
        False,
        "timeout_s: expected number",
    ),
    (
        "int_accepted_for_float",
        {"name": "code.execute", "arguments": {"language": "python", "code": "x", "timeout_s": 10.0}},
        {"name": "code.execute", "arguments": {"language": "python", "code": "x", "timeout_s": 10}},
        True,
        "",
    ),
    (
        "omitted_equals_default",
        {"name": "web.search", "arguments": {"query": "q", "top_k": 5}},
        {"name": "web.search", "arguments": {"query": "q"}},
        True,
        "",
    ),
    (
        "omitted_differs_from_default",
        WS,
        {"name": "web.search", "arguments": {"query": "python json"}},
        False,
        "top_k",
    ),
    (
        "optional_absent_on_both_sides",
        {"name": "web.search", "arguments": {"query": "q"}},
        {"name": "web.search", "arguments": {"query": "Q"}},
        True,
        "",
    ),
    (
        "list_in_order",
        {"name": "repo.search", "arguments": {"pattern": "X", "paths": ["a", "b"]}},
        {"name": "repo.search", "arguments": {"pattern": "x", "paths": ["a", "b"]}},
        True,
        "",
    ),
    (
        "list_out_of_order",
        {"name": "repo.search", "arguments": {"pattern": "X", "paths": ["a", "b"]}},
        {"name": "repo.search", "arguments": {"pattern": "X", "paths": ["b", "a"]}},
        False,
        "paths[0]",
    ),
    (
        "list_length",
        {"name": "repo.search", "arguments": {"pattern": "X", "paths": ["a", "b"]}},
        {"name": "repo.search", "arguments": {"pattern": "X", "paths": ["a"]}},
        False,
        "expected 2 items",
    ),
    (
        "dict_key_by_key",
        {"name": "web.search", "arguments": {"query": "q", "filters": {"site": "a.org", "recency": "week"}}},
        {"name": "web.search", "arguments": {"query": "q", "filters": {"recency": "week", "site": "A.org"}}},
        True,
        "",
    ),
    (
        "dict_value_differs",
        {"name": "web.search", "arguments": {"query": "q", "filters": {"recency": "week"}}},
        {"name": "web.search", "arguments": {"query": "q", "filters": {"recency": "day"}}},
        False,
        "filters.recency",
    ),
    (
        "path_normalised",
        {"name": "read_file", "arguments": {"path": "src/a.py"}},
        {"name": "read_file", "arguments": {"path": "./src//a.py"}},
        True,
        "",
    ),
    (
        "path_escape",
        {"name": "read_file", "arguments": {"path": "src/a.py"}},
        {"name": "read_file", "arguments": {"path": "../src/a.py"}},
        False,
        "escapes",
    ),
    (
        "url_normalised",
        {"name": "web.crawl", "arguments": {"url": "https://example.com/a"}},
        {"name": "web.crawl", "arguments": {"url": "HTTPS://Example.com:443/a#top"}},
        True,
        "",
    ),
    ("arguments_not_object", WS, {"name": "web.search", "arguments": "query=python"}, False, "arguments"),
]


@pytest.mark.parametrize("expected, emitted, ok, why", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_match_call_rule(expected: dict, emitted: dict, ok: bool, why: str) -> None:
    reason = match_call(expected, emitted)
    assert (reason is None) == ok, reason
    if not ok:
        assert why in reason


def test_parallel_calls_match_order_insensitively_and_once_each() -> None:
    a = {"name": "math.eval", "arguments": {"expression": "1+1"}}
    b = {"name": "read_file", "arguments": {"path": "x.py"}}
    assert match_calls([a, b], [b, a]) == 2
    assert match_calls([a, a], [a]) == 1  # one emitted call answers one expected call
    assert match_calls([a, b], []) == 0
