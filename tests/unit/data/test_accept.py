"""Multi-valued gold (kimi_student/data/accept.py): where the generator lets a correct call give another
value or leave an argument out, every alternative is schema-valid and scores as the gold call does, and
nothing the request fixes is widened."""

from __future__ import annotations

from typing import Any

import pytest

from kimi_student.data.accept import accept_problem, accept_rules, accepted_arguments
from kimi_student.data.contextual import generate
from kimi_student.data.world import run_call
from kimi_student.eval.score.call_match import match_call
from kimi_student.tools.registry import args_valid, get_tool

Item = dict[str, Any]


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return generate(400, 3)[1]


def _widened(call: dict[str, Any]) -> list[dict[str, Any]]:
    """Every call the gold call's `accept` admits besides itself: each alternative and each omission."""
    out = []
    for key, rule in call.get("accept", {}).items():
        out += [{**call["arguments"], key: v} for v in rule.get("any_of", [])[1:]]
        if rule.get("may_omit"):
            out.append({k: v for k, v in call["arguments"].items() if k != key})
    return out


def test_alternatives_are_schema_valid_and_match_the_gold_call(items: list[Item]) -> None:
    widened = 0
    for it in items:
        for call in it["metadata"]["call_sequence"]:
            assert accept_problem(call) is None, (it["id"], call)
            for args in _widened(call):
                assert args_valid(call["name"], args), (it["id"], args)
                assert match_call(call, {"name": call["name"], "arguments": args}) is None, (it["id"], args)
                # Without `accept`, the same call is refused: the rule is what widens the gold.
                strict = {"name": call["name"], "arguments": call["arguments"]}
                assert match_call(strict, {"name": call["name"], "arguments": args}) is not None
                widened += 1
    assert widened > 100


def test_alternatives_appear_where_the_item_allows_them(items: list[Item]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for it in items:
        m = it["metadata"]
        calls = m["call_sequence"]
        kind = (m["adversarial"] or {}).get("kind")
        for i, call in enumerate(calls):
            accept = call.get("accept", {})
            required = get_tool(call["name"]).parameters["required"]
            assert not set(accept) & set(required)
            if m["expected_behaviour"] == "retry" and i == 0:  # widened only where it fails alike
                failure = run_call(call["name"], call["arguments"])[1]
                for alt in accepted_arguments(call):
                    assert run_call(call["name"], alt)[1] == failure, (it["id"], alt)
            if kind == "malformed_json" and i == len(calls) - 1:
                assert not accept, "the request spells these arguments out"
            if kind == "range_violation":
                assert m["adversarial"]["field"] not in accept, "the request asks for this one"
            if call["name"] == "file.write" and "existing" in call["arguments"]["path"]:
                assert "mode" not in accept, "only overwrite replaces an existing file"
            seen |= {(call["name"], k, r) for k, rules in accept.items() for r in rules}
    # (repo.search `paths` is never left out now: the request names the folders, and the search without
    # them is another item's gold call with other matches, so accepted_fixtures drops the rule.)
    for want in [
        ("web.search", "top_k", "may_omit"),
        ("file.write", "mode", "any_of"),
        ("web.crawl", "include", "any_of"),
        ("math.eval", "precision", "may_omit"),
    ]:
        assert want in seen, want


def test_an_argument_at_its_default_or_asked_for_gets_no_rule() -> None:
    ok = {"ok": True}
    assert accept_rules("web.search", {"query": "q", "top_k": 5, "lang": "en"}, ok) == {}
    assert accept_rules("web.search", {"query": "q", "top_k": 7}, ok) == {"top_k": {"may_omit": True}}
    assert accept_rules("web.search", {"query": "q", "top_k": 7}, ok, asked={"top_k"}) == {}


CALL = {"name": "web.search", "arguments": {"query": "q", "top_k": 7, "lang": "de"}}
BAD_ACCEPT = [
    ({}, "non-empty"),
    ([], "non-empty"),
    ({"filters": {"may_omit": True}}, "does not set"),
    ({"top_k": {"may_omit": True, "why": 1}}, "only"),
    ({"top_k": {"may_omit": False}}, "may_omit must be true"),
    ({"query": {"may_omit": True}}, "does not require"),
    ({"top_k": {"any_of": [8, 7]}}, "starts with the gold value"),
    ({"top_k": {"any_of": 7}}, "starts with the gold value"),
    ({"top_k": {"any_of": [7, 50]}}, "JSON Schema"),
    ({"lang": {"any_of": ["de", "german"]}}, "JSON Schema"),
]


@pytest.mark.parametrize("accept, why", BAD_ACCEPT)
def test_verify_refuses_an_unsound_accept(accept: Any, why: str) -> None:
    problem = accept_problem({**CALL, "accept": accept})
    assert problem and why in problem
    assert accept_problem({**CALL, "accept": {"top_k": {"any_of": [7, 8], "may_omit": True}}}) is None


def test_every_admitted_call_replays_the_gold_result() -> None:
    """A call the scorer accepts finds the item's own result in the fixtures (every combination)."""
    from kimi_student.data.accept import accepted_arguments
    from kimi_student.tools.broker import ToolBroker

    _, items, fixtures = generate(400, 3)
    broker = ToolBroker(fixtures)
    admitted = 0
    for it in items:
        meta = it["metadata"]
        for call, done in zip(meta["call_sequence"], meta["tool_results"]):
            for args in accepted_arguments(call):
                admitted += 1
                reply = broker.lookup(call["name"], args)
                assert reply.hit and reply.result == done["result"], (it["id"], args)
    assert admitted > 100


def test_an_alternative_another_call_answers_otherwise_is_not_admitted() -> None:
    from kimi_student.data.accept import accepted_arguments, accepted_fixtures
    from kimi_student.tools.normalize import fixture_key

    call = {
        "name": "web.search",
        "arguments": {"query": "alpha", "top_k": 7},
        "accept": {"top_k": {"may_omit": True}},
    }
    item = {
        "metadata": {
            "call_sequence": [call],
            "tool_results": [{"name": "web.search", "result": {"ok": True, "n": 7}}],
        }
    }
    other = ("web.search", fixture_key("web.search", {"query": "alpha"}))
    fixtures = {other: {"ok": True, "n": 5}}  # another item's gold call: the search without top_k
    accepted_fixtures([item], fixtures)
    assert "accept" not in call and list(accepted_arguments(call)) == []
    assert fixtures == {other: {"ok": True, "n": 5}}
    call["accept"] = {"top_k": {"may_omit": True}}
    fresh: dict = {}
    accepted_fixtures([item], fresh)
    assert call["accept"] == {"top_k": {"may_omit": True}} and fresh == {other: {"ok": True, "n": 7}}
