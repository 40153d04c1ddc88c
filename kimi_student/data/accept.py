"""Multi-valued gold: the values of a gold call's arguments that a correct call may give instead, and
the arguments it may leave out (a gold call's `accept`, DESIGN.md section 3; call_match honours it).

The generator adds optional arguments the request never asks for (a random `top_k`, a `timeout_s`, a
`paths` filter): a call without them answers the request as well, so each may be omitted. A few take other
values that serve the request equally (`file.write` to a new path creates it in mode `create` or
`overwrite`; a page read with or without its links). An alternative or an omission is offered only where
the simulated tool answers it as it answers the gold call (both succeed, or both fail), so `overwrite`,
the retry of a write to an existing file, is never widened to `create`.

Never widened: required arguments, an argument the request asks for (the capped field of a range
violation), every argument of a call the request spells out (malformed_json) and the deliberate failure
that opens an error-recovery item.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kimi_student.data.world import simulate
from kimi_student.tools.normalize import normalize_arguments
from kimi_student.tools.registry import args_valid, get_tool

Call = tuple[str, dict[str, Any], dict[str, Any]]  # (tool, arguments, result)

# (tool, argument) -> values that serve the generator's requests alike (none of its requests names them).
ALTERNATIVES: dict[tuple[str, str], tuple[Any, ...]] = {
    ("file.write", "mode"): ("create", "overwrite"),
    ("web.crawl", "include"): (["text"], ["text", "links"]),
}
_MISSING = object()


def _works_alike(name: str, args: dict[str, Any], result: dict[str, Any]) -> bool:
    return simulate(name, normalize_arguments(name, args)).get("ok") == result.get("ok")


def accept_rules(
    name: str, args: dict[str, Any], result: dict[str, Any], asked: Collection[str] = ()
) -> dict:
    """{argument: {"any_of": [gold value, alternatives...], "may_omit": true}} for the optional arguments
    of one gold call that the request did not ask for (`asked`); each key only where it says something
    (leaving out an argument whose value is its default needs no rule: call_match takes the default)."""
    params = get_tool(name).parameters
    required, props = set(params.get("required", [])), params.get("properties", {})
    rules: dict[str, dict[str, Any]] = {}
    for key, value in args.items():
        if key in required or key in asked:
            continue
        rule: dict[str, Any] = {}
        alts = [
            a
            for a in ALTERNATIVES.get((name, key), ())
            if a != value and _works_alike(name, {**args, key: a}, result)
        ]
        if alts:
            rule["any_of"] = [value, *alts]
        rest = {k: v for k, v in args.items() if k != key}
        if props.get(key, {}).get("default", _MISSING) != value and _works_alike(name, rest, result):
            rule["may_omit"] = True
        if rule:
            rules[key] = rule
    return rules


def gold_call_sequence(calls: list[Call], retry: bool, adversarial: dict[str, Any] | None) -> list[dict]:
    """An item's `call_sequence`: each call's name and arguments, and its `accept` where the item allows
    other calls (module docstring)."""
    kind = (adversarial or {}).get("kind")
    asked = {adversarial["field"]} if adversarial and kind == "range_violation" else set()
    out = []
    for i, (name, args, result) in enumerate(calls):
        call: dict[str, Any] = {"name": name, "arguments": args}
        strict = (retry and i == 0) or (kind == "malformed_json" and i == len(calls) - 1)
        rules = {} if strict else accept_rules(name, args, result, asked)
        if rules:
            call["accept"] = rules
        out.append(call)
    return out


def accept_problem(call: dict[str, Any]) -> str | None:
    """Why a gold call's `accept` is not sound, if it is not: each rule names an argument the call sets,
    holds only `any_of` (a list, the gold value first) and `may_omit` (true), every value it admits keeps
    the arguments valid against the tool's schema, and only an argument the schema does not require may
    be omitted."""
    accept, args = call.get("accept"), call["arguments"]
    if accept is None:
        return None
    if not isinstance(accept, dict) or not accept:
        return "accept is not a non-empty object"
    required = set(get_tool(call["name"]).parameters.get("required", []))
    for key, rule in accept.items():
        if key not in args:
            return f"accept.{key}: the gold call does not set it"
        if not isinstance(rule, dict) or not rule or set(rule) - {"any_of", "may_omit"}:
            return f"accept.{key}: a rule holds `any_of` and/or `may_omit` only"
        if "may_omit" in rule and (rule["may_omit"] is not True or key in required):
            return (
                f"accept.{key}: may_omit must be true, and only for an argument the schema does not require"
            )
        alts = rule.get("any_of", [args[key]])
        if not isinstance(alts, list) or not alts or alts[0] != args[key]:
            return f"accept.{key}: any_of must be a list that starts with the gold value"
        if not all(args_valid(call["name"], {**args, key: a}) for a in alts):
            return f"accept.{key}: an alternative fails the tool's JSON Schema"
    return None
