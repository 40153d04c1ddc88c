"""call_accuracy's matching rules (kimi_student/eval/score/call_match.py), one table row per rule, the
cases where BFCL's AST checker disagreed with the old matcher among them; a property that matching never
raises on arbitrary JSON."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import strategies as st

from kimi_student.eval.score.call_match import (
    ERROR_TYPES,
    CallMatch,
    canonical_name,
    match_call,
    match_calls,
    same_name,
)
from tests.props import tiers

WS = {"name": "web.search", "arguments": {"query": "Python JSON", "top_k": 3}}


def ws(**args: Any) -> dict[str, Any]:
    return {"name": "web.search", "arguments": args}


def run(**args: Any) -> dict[str, Any]:
    return {"name": "code.execute", "arguments": {"language": "python", "code": "x", **args}}


def get(**params: Any) -> dict[str, Any]:
    return {"name": "http.get", "arguments": {"url": "https://api.example.com/v1", "params": params}}


def repo(*paths: str) -> dict[str, Any]:
    return {"name": "repo.search", "arguments": {"pattern": "X", "paths": list(paths)}}


def unknown(**args: Any) -> dict[str, Any]:
    return {"name": "calc.convert", "arguments": args}


def accepting(call: dict[str, Any], **rules: dict[str, Any]) -> dict[str, Any]:
    return {**call, "accept": rules}


# (id, gold call, emitted call, None for a match or the error type of the rejection)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    ("exact", WS, WS, None),
    # names
    ("underscore_spelling_of_a_registered_tool", WS, {**WS, "name": "web_search"}, None),
    (
        "dotted_spelling_of_an_underscore_tool",
        {"name": "read_file", "arguments": {"path": "a"}},
        {"name": "read.file", "arguments": {"path": "a"}},
        None,
    ),
    ("other_tool", WS, {**WS, "name": "web.crawl"}, "wrong_name"),
    (
        "unregistered_names_compare_as_written",
        unknown(x=1),
        {"name": "calc_convert", "arguments": {"x": 1}},
        "wrong_name",
    ),
    ("name_not_a_string", WS, {"name": 5, "arguments": WS["arguments"]}, "wrong_name"),
    ("arguments_not_object", WS, {"name": "web.search", "arguments": "query=python"}, "arguments_not_object"),
    # presence
    ("missing_required", WS, ws(top_k=3), "missing_required"),
    (
        "unexpected_argument_outside_schema",
        WS,
        ws(query="python json", top_k=3, page=2),
        "unexpected_argument",
    ),
    (
        "argument_the_gold_does_not_set_and_without_default",
        ws(query="q"),
        ws(query="q", filters={}),
        "unexpected_argument",
    ),
    ("omitted_equals_default", ws(query="q", top_k=5), ws(query="q"), None),
    ("default_given_where_gold_omits", ws(query="q"), ws(query="q", top_k=5), None),
    ("omitted_differs_from_default", WS, ws(query="python json"), "missing_argument"),
    ("optional_absent_on_both_sides", ws(query="q"), ws(query="Q"), None),
    # accept: any of, may be omitted
    ("may_omit", accepting(WS, top_k={"may_omit": True}), ws(query="python json"), None),
    (
        "may_omit_takes_the_default_too",
        accepting(WS, top_k={"may_omit": True}),
        ws(query="python json", top_k=5),
        None,
    ),
    (
        "may_omit_is_no_other_value",
        accepting(WS, top_k={"may_omit": True}),
        ws(query="python json", top_k=7),
        "value_error:integer",
    ),
    (
        "any_of_alternative",
        accepting(ws(query="q", lang="en"), lang={"any_of": ["en", "de"]}),
        ws(query="q", lang="de"),
        None,
    ),
    (
        "any_of_is_no_other_value",
        accepting(ws(query="q", lang="en"), lang={"any_of": ["en", "de"]}),
        ws(query="q", lang="fr"),
        "value_error:enum",
    ),
    (
        "any_of_is_not_may_omit",
        accepting(ws(query="q", lang="de"), lang={"any_of": ["de", "fr"]}),
        ws(query="q"),
        "missing_argument",
    ),
    (
        "malformed_accept_rule_is_ignored",
        {**WS, "accept": {"top_k": "x"}},
        ws(query="python json"),
        "missing_argument",
    ),
    ("malformed_accept_is_ignored", {**WS, "accept": ["top_k"]}, ws(query="python json"), "missing_argument"),
    (
        "may_omit_cannot_waive_a_required_argument",
        accepting(WS, query={"may_omit": True}),
        ws(top_k=3),
        "missing_required",
    ),
    # types, on every path
    ("int_as_string", WS, ws(query="python json", top_k="3"), "type_error:integer"),
    ("bool_is_not_a_number", run(timeout_s=1), run(timeout_s=True), "type_error:number"),
    ("int_accepted_for_number", run(timeout_s=10.0), run(timeout_s=10), None),
    ("float_is_not_an_integer", WS, ws(query="python json", top_k=3.0), "type_error:integer"),
    ("string_never_equals_true", get(cache="true"), get(cache=True), "type_error:string"),
    ("string_never_equals_a_number", get(n="1"), get(n=1), "type_error:string"),
    ("bool_never_equals_0_in_a_union", get(cache=False), get(cache=0), "type_error:boolean"),
    ("number_never_equals_a_bool_in_a_union", get(n=1), get(n=True), "type_error:number"),
    ("union_value_compared_by_its_type", get(n=2.5), get(n=2.5000001), None),
    ("no_schema_bool_is_not_1", unknown(flag=True), unknown(flag=1), "type_error:boolean"),
    ("no_schema_string_is_not_a_number", unknown(x="1"), unknown(x=1), "type_error:string"),
    ("no_schema_object_key_by_key", unknown(o={"a": 1}), unknown(o={"a": 1}), None),
    ("no_schema_unexpected_argument", unknown(x=1), unknown(x=1, y=2), "unexpected_argument"),
    ("no_schema_missing_argument", unknown(x=1, y=2), unknown(x=1), "missing_argument"),
    ("null_is_not_a_string", WS, ws(query=None, top_k=3), "type_error:string"),
    # numbers (BFCL: integers exact, numbers relative only)
    ("integer_exact_bfcl_50000007", unknown(n=50000000), unknown(n=50000007), "value_error:integer"),
    ("integer_schema_exact", ws(query="q", top_k=19), ws(query="q", top_k=20), "value_error:integer"),
    ("number_relative_tolerance", run(timeout_s=10.5), run(timeout_s=10.500001), None),
    ("number_outside_tolerance", run(timeout_s=10.5), run(timeout_s=10.6), "value_error:number"),
    ("no_absolute_tolerance_bfcl_5e-12", unknown(eps=8.854e-12), unknown(eps=5e-12), "value_error:number"),
    ("tiny_numbers_relatively_close", unknown(eps=8.854e-12), unknown(eps=8.854000001e-12), None),
    ("huge_integer", unknown(n=10**400), unknown(n=10**400 + 1), "value_error:integer"),
    ("huge_integer_for_a_number", run(timeout_s=5), run(timeout_s=10**400), "value_error:number"),
    # strings, paths, URLs, enums, booleans
    ("string_case_and_space", WS, ws(query=" python   json", top_k=3), None),
    ("string_differs", WS, ws(query="python yaml", top_k=3), "value_error:string"),
    ("enum_case_folded", ws(query="q", lang="en"), ws(query="q", lang="EN"), None),
    ("enum_differs", ws(query="q", lang="en"), ws(query="q", lang="de"), "value_error:enum"),
    (
        "boolean_exact",
        {"name": "repo.search", "arguments": {"pattern": "X", "case_sensitive": True}},
        {"name": "repo.search", "arguments": {"pattern": "X", "case_sensitive": False}},
        "value_error:boolean",
    ),
    (
        "path_normalised",
        {"name": "read_file", "arguments": {"path": "src/a.py"}},
        {"name": "read_file", "arguments": {"path": "./src//a.py"}},
        None,
    ),
    (
        "path_escape",
        {"name": "read_file", "arguments": {"path": "src/a.py"}},
        {"name": "read_file", "arguments": {"path": "../src/a.py"}},
        "value_error:path",
    ),
    (
        "path_case_matters",
        {"name": "read_file", "arguments": {"path": "src/a.py"}},
        {"name": "read_file", "arguments": {"path": "SRC/a.py"}},
        "value_error:path",
    ),
    ("list_of_paths_normalised", repo("src", "lib/x"), repo("./src/", "lib//x"), None),
    ("list_of_paths_escape", repo("src"), repo("../src"), "value_error:path"),
    (
        "url_normalised",
        {"name": "web.crawl", "arguments": {"url": "https://example.com/a"}},
        {"name": "web.crawl", "arguments": {"url": "HTTPS://Example.com:443/a#top"}},
        None,
    ),
    (
        "url_differs",
        {"name": "web.crawl", "arguments": {"url": "https://example.com/a"}},
        {"name": "web.crawl", "arguments": {"url": "https://example.com/b"}},
        "value_error:url",
    ),
    (
        "url_malformed",
        {"name": "web.crawl", "arguments": {"url": "https://example.com/a"}},
        {"name": "web.crawl", "arguments": {"url": "http://[::1"}},
        "value_error:url",
    ),
    # lists and objects
    ("list_in_order", repo("a", "b"), repo("a", "b"), None),
    ("list_out_of_order", repo("a", "b"), repo("b", "a"), "value_error:path"),
    ("list_length", repo("a", "b"), repo("a"), "value_error:list_length"),
    (
        "list_expected",
        repo("a"),
        {"name": "repo.search", "arguments": {"pattern": "X", "paths": "a"}},
        "type_error:array",
    ),
    (
        "dict_key_by_key",
        ws(query="q", filters={"site": "a.org", "recency": "week"}),
        ws(query="q", filters={"recency": "week", "site": "A.org"}),
        None,
    ),
    (
        "dict_value_differs",
        ws(query="q", filters={"recency": "week"}),
        ws(query="q", filters={"recency": "day"}),
        "value_error:enum",
    ),
]


@pytest.mark.parametrize("gold, emitted, error", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_match_call_rule(gold: dict, emitted: dict, error: str | None) -> None:
    why = match_call(gold, emitted)
    assert (why and why.error) == error, why
    if why:
        assert why.error in ERROR_TYPES and why.reason


def test_the_table_has_one_row_per_rule() -> None:
    assert len({c[0] for c in CASES}) == len(CASES)


A = {"name": "math.eval", "arguments": {"expression": "1+1"}}
B = {"name": "read_file", "arguments": {"path": "x.py"}}
B2 = {"name": "read_file", "arguments": {"path": "y.py"}}

# (id, gold calls, emitted calls, matched, error types)
ITEM_CASES = [
    ("parallel_any_order", [A, B], [B, A], 2, {}),
    ("one_emitted_call_answers_one_gold_call", [A, A], [A], 1, {"missing_call": 1}),
    ("nothing_emitted", [A, B], [], 0, {"missing_call": 2}),
    ("duplicate_is_an_extra_call", [A], [A, A], 1, {"extra_call": 1}),
    ("spurious_call", [A], [A, B], 1, {"extra_call": 1}),
    ("wrong_value_is_one_error_not_two", [A, B], [A, B2], 1, {"value_error:path": 1}),
    ("closest_candidate_has_the_same_name", [B], [A, B2], 0, {"value_error:path": 1, "extra_call": 1}),
    ("no_candidate_of_that_name", [B], [A], 0, {"wrong_name": 1}),
    ("nothing_expected", [], [A], 0, {"extra_call": 1}),
]


@pytest.mark.parametrize(
    "gold, emitted, matched, errors", [c[1:] for c in ITEM_CASES], ids=[c[0] for c in ITEM_CASES]
)
def test_match_calls_of_an_item(gold: list, emitted: list, matched: int, errors: dict) -> None:
    m = match_calls(gold, emitted)
    assert m == CallMatch(matched, len(gold), len(emitted), Counter(errors))


def test_underscore_spelling_only_where_it_names_one_tool() -> None:
    names = {"web.search", "web_search", "file.write", "read_file"}
    assert canonical_name("file_write", names) == "file.write"
    assert canonical_name("read.file", names) == "read_file"
    # Two registered tools fold to `web_search`: each spelling names only itself.
    assert canonical_name("web_search", names) == "web_search"
    assert not same_name("web.search", "web_search", names)
    assert same_name("web.search", "web.search", names)
    assert canonical_name("calc.convert", names) == "calc.convert"  # unregistered: as written
    # The real registry has no such collision: every `_` spelling of its tools is accepted.
    assert canonical_name("web_search") == "web.search" and canonical_name("http_get") == "http.get"


# ---- never raises on arbitrary JSON ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
NAMES = ["web.search", "web_search", "http.get", "repo.search", "read_file", "code.execute", "x", 5, None]
arg_keys = st.sampled_from(["query", "top_k", "filters", "params", "paths", "path", "url", "timeout_s", "x"])
calls = st.fixed_dictionaries(
    {
        "name": st.sampled_from(NAMES),
        "arguments": st.one_of(st.dictionaries(arg_keys, json_values, max_size=4), json_values),
    },
    optional={"accept": st.one_of(json_values, st.dictionaries(arg_keys, json_values, max_size=3))},
)


def check_never_raises(gold: list[dict[str, Any]], emitted: list[dict[str, Any]]) -> None:
    m = match_calls(gold, emitted)
    assert 0 <= m.matched <= min(len(gold), len(emitted))
    assert set(m.errors) <= set(ERROR_TYPES)
    # Every call is accounted for: a matched pair, or one error per call left over (a pair counts once).
    assert m.matched + sum(m.errors.values()) == max(len(gold), len(emitted))


test_match_calls_never_raises, test_match_calls_never_raises_many = tiers(
    check_never_raises, gold=st.lists(calls, max_size=3), emitted=st.lists(calls, max_size=3)
)
