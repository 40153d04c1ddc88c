"""Multi-valued gold: the values of a gold call's arguments that a correct call may give instead, and
the arguments it may leave out (a gold call's `accept`, DESIGN.md section 3; call_match honours it).

The generator adds optional arguments the request never asks for (a random `top_k`, a `timeout_s`, a
`paths` filter): a call without them answers the request as well, so each may be omitted. A few take other
values that serve the request equally (`file.write` to a new path creates it in mode `create` or
`overwrite`; a page read with or without its links). An alternative or an omission is offered only where
the simulated tool answers it as it answers the gold call (both succeed, or both fail), so `overwrite`,
the retry of a write to an existing file, is never widened to `create`.

Never widened: required arguments, an argument the request asks for (the capped field of a range
violation) and every argument of a call the request spells out (malformed_json). The deliberate failure
that opens an error-recovery item is widened like any call, so by the same test only where the call still
fails as the gold fails: its `stdin: ""` may be left out, its 1-second timeout or its `create` on an
existing file may not (without them the call would succeed).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator
from typing import Any

from kimi_student.data.world import remembered, run_call
from kimi_student.fingerprint import canonical_json
from kimi_student.tools.registry import args_valid, get_tool

Call = tuple[str, dict[str, Any], dict[str, Any]]  # (tool, arguments, result)

# (tool, argument) -> values that serve the generator's requests alike (none of its requests names them).
ALTERNATIVES: dict[tuple[str, str], tuple[Any, ...]] = {
    ("file.write", "mode"): ("create", "overwrite"),
    ("web.crawl", "include"): (["text"], ["text", "links"]),
}
_MISSING = object()
MAX_ACCEPTED = 64  # argument sets one gold call may admit (each widened argument multiplies them)


def _works_alike(name: str, args: dict[str, Any], result: dict[str, Any]) -> bool:
    # run_call: inside generate() a call the world has answered before is not simulated again
    return run_call(name, args)[1].get("ok") == result.get("ok")


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


def _remembered_rules(name: str, args: dict[str, Any], result: dict[str, Any], asked: set[str]) -> dict:
    """accept_rules, worked out once per distinct call inside `generate` (half the calls of a 10k dataset
    repeat one), a fresh copy each time: accepted_fixtures trims one item's rules."""
    key = ("accept", name, canonical_json(args), *sorted(asked))
    rules = remembered(key, lambda: accept_rules(name, args, result, asked))
    return {k: dict(v) for k, v in rules.items()}


def gold_call_sequence(calls: list[Call], adversarial: dict[str, Any] | None) -> list[dict]:
    """An item's `call_sequence`: each call's name and arguments, and its `accept` where the item allows
    other calls (module docstring)."""
    kind = (adversarial or {}).get("kind")
    asked = {adversarial["field"]} if adversarial and kind == "range_violation" else set()
    out = []
    for i, (name, args, result) in enumerate(calls):
        call: dict[str, Any] = {"name": name, "arguments": args}
        strict = kind == "malformed_json" and i == len(calls) - 1
        rules = {} if strict else _remembered_rules(name, args, result, asked)
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


def accepted_arguments(call: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every argument set a gold call's `accept` admits besides its own arguments: each widened argument
    takes each of its `any_of` values, or is left out where it `may_omit`, in every combination (at most
    MAX_ACCEPTED in all, the gold's own included)."""
    args, accept = call["arguments"], call.get("accept") or {}
    keys = list(accept)
    choices = [
        [*accept[k].get("any_of", [args[k]]), *([_MISSING] if accept[k].get("may_omit") else [])]
        for k in keys
    ]
    for combo in itertools.islice(itertools.product(*choices), MAX_ACCEPTED):
        alt = {k: v for k, v in args.items() if k not in keys}
        alt.update({k: v for k, v in zip(keys, combo) if v is not _MISSING})
        if alt != args:
            yield alt


def accepted_fixtures(items: list[dict[str, Any]], fixtures: dict[tuple[str, str], dict]) -> None:
    """Add to `fixtures` the replay of every call an item's `accept` admits: the gold call's own result
    (the call works alike, so the tool loop answers it alike and the item's tool results still hold).

    Where an admitted call is one the fixtures already answer otherwise (another item's gold call, or an
    earlier item's alternative, with other results), the rules that admit it are taken out of that
    item's `accept`: a call the scorer accepts must find the item's own result."""
    for item in items:
        meta = item["metadata"]
        for call, done in zip(meta["call_sequence"], meta["tool_results"]):
            result, name = done["result"], call["name"]
            while call.get("accept"):
                keyed = [(a, (name, run_call(name, a)[0])) for a in accepted_arguments(call)]
                clash = next((a for a, k in keyed if fixtures.get(k, result) != result), None)
                if clash is None:
                    for _, k in keyed:
                        fixtures[k] = result
                    break
                for k in [k for k in call["accept"] if clash.get(k, _MISSING) != call["arguments"][k]]:
                    del call["accept"][k]
            if "accept" in call and not call["accept"]:
                del call["accept"]
