"""The scorer's schema check gives jsonschema's answer (registry.args_valid) on any arguments: near-valid
calls of every registered tool with each field mutated to any JSON value, and schemas it does not read."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import strategies as st

from kimi_student.eval.score import schema_valid as sv
from kimi_student.tools import registry as reg
from kimi_student.tools.registry import TOOLS, args_valid, registry
from tests.props import tiers

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [0.0, 1.0, 2.5, -0.0, 10**400, "", "x", "https://a.example/", "utf-8", "day", "text", "lf"]
    ),
    st.text(max_size=10),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
)
NAMES = [t.name for t in TOOLS]


def _fields(schema: dict[str, Any]) -> list[str]:
    out = list(schema.get("properties", {}))
    for k, sub in schema.get("properties", {}).items():
        out += [f"{k}.{f}" for f in _fields(sub)]
    return out


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, Any]:
    """A tool name (now and then an unknown one) and arguments: the required fields set, then a few fields
    (nested ones too) set to any JSON value, now and then not an object at all."""
    name = draw(st.sampled_from([*NAMES, "no.such_tool"]))
    if draw(st.integers(0, 20)) == 0:
        return name, draw(json_values)
    schema = registry()[name].parameters if name in registry() else {}
    args: dict[str, Any] = {k: draw(scalars) for k in schema.get("required", [])}
    for path in draw(st.lists(st.sampled_from([*_fields(schema), "extra"]), max_size=4)):
        head, _, rest = path.partition(".")
        if rest:
            args.setdefault(head, {})
            if isinstance(args[head], dict):
                args[head][rest] = draw(json_values)
        else:
            args[head] = draw(json_values)
    return name, args


def check_same_as_jsonschema(call: tuple[str, Any]) -> None:
    name, args = call
    assert sv.schema_valid(name, args) == args_valid(name, args)


test_same_as_jsonschema, test_same_as_jsonschema_many = tiers(check_same_as_jsonschema, call=calls())


@pytest.mark.parametrize(
    ("args", "valid"),
    [
        ({"query": "q"}, True),
        ({"query": "q", "top_k": 5.0}, True),  # an integer-valued float is an integer
        ({"query": "q", "top_k": True}, False),  # a bool is no integer
        ({"query": "q", "top_k": 0}, False),  # minimum 1
        ({"query": ""}, False),  # minLength 1
        ({"query": "q", "filters": {"recency": "Week"}}, False),  # enum, case kept
        ({"query": "q", "other": 1}, False),  # additionalProperties false
        ({}, False),  # required
    ],
)
def test_rules(args: dict[str, Any], valid: bool) -> None:
    assert sv.schema_valid("web.search", args) is valid
    assert args_valid("web.search", args) is valid


def test_every_registered_schema_is_read_here() -> None:
    """Otherwise the scorer falls back to jsonschema for that tool: correct, and as slow as before."""
    assert [t.name for t in TOOLS if not sv._known(t.parameters)] == []


def test_an_unread_keyword_goes_to_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    tool = registry()["math.eval"]
    params = {**tool.parameters, "properties": {"expression": {"type": "string", "pattern": "^[0-9]+$"}}}
    changed = tuple(replace(t, parameters=params) if t is tool else t for t in TOOLS)
    monkeypatch.setattr(reg, "TOOLS", changed)
    caches = (reg.registry, reg._validator)  # from the changed schema now, from the real one after
    for c in caches:
        c.cache_clear()
    try:
        assert not sv._known(params)
        assert sv.schema_valid("math.eval", {"expression": "12"}) is True
        assert sv.schema_valid("math.eval", {"expression": "x"}) is False  # `pattern`: jsonschema's check
    finally:
        monkeypatch.undo()
        for c in caches:
            c.cache_clear()
