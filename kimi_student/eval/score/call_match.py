"""Matching of emitted tool calls against gold ones, to the standard of BFCL's AST checker
(`call_accuracy`: reported, not gated). Every rule is a row of tests/unit/eval/score/test_call_match.py.

Names. The registry's dotted name is canonical. A spelling with `_` for `.` (`web_search`) names the same
tool only where that is unambiguous: exactly one registered tool folds to it. A name no registered tool
folds to is compared as written.

Arguments (a rejection names the first rule broken, as one error type of ERROR_TYPES):
- every required argument is present (`missing_required`), none outside the schema (`unexpected_argument`);
- an argument the gold call leaves out may be left out or given its schema default; an emitted argument
  the gold call does not set, and that has no default, is `unexpected_argument`;
- an argument the gold call sets must be present (`missing_argument`) unless it equals its schema default
  or the gold call's `accept` says it may be omitted;
- a gold call's `accept` {argument: {"any_of": [...], "may_omit": true}} widens the one gold value of a
  top-level argument to every value listed in `any_of`, and where it may be omitted, to its schema
  default too (leaving it out and giving the default are the same call; DESIGN.md section 3);
- types are checked on every path (`type_error:<json type>`): the schema's type, or where the schema
  gives several types or none, the gold value's own JSON type. An int is accepted for a number; a bool is
  never a number; a string never equals a number or a bool, nor a bool a number;
- integers compare exactly (`value_error:integer`); numbers (floats) with a relative tolerance of 1e-6
  and no absolute tolerance (`value_error:number`: 8.854e-12 is not 5e-12);
- path fields (`path_fields`, list items included) compare as sandbox paths (`value_error:path`), URI
  fields as canonical URLs (`value_error:url`), enum strings case-folded (`value_error:enum`), other
  strings NFC + case-fold + whitespace-collapsed (`value_error:string`), booleans exactly;
- lists compare in order (`value_error:list_length` for another length), objects key by key.

Calls of one item (`match_calls`): order-insensitive, each expected call taking at most one emitted call
(greedy, first come). An expected call left unmatched is charged the error of its closest emitted
candidate (the first unmatched emitted call with its name, else the first left: `wrong_name`), which is
then spent (a substitution is one error, not two), or `missing_call` when no emitted call is left; an
emitted call left over after that is an `extra_call`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kimi_student.errors import ArgumentError
from kimi_student.tools.normalize import normalize_path, normalize_query, normalize_url, schema_types
from kimi_student.tools.registry import registry

JSON_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
VALUE_KINDS = ("string", "number", "integer", "boolean", "null", "url", "path", "enum", "list_length")
ERROR_TYPES = (
    "wrong_name",
    "arguments_not_object",
    "missing_required",
    "missing_argument",
    "unexpected_argument",
    *(f"type_error:{t}" for t in JSON_TYPES),
    *(f"value_error:{k}" for k in VALUE_KINDS),
    "missing_call",
    "extra_call",
)
REL_TOL = 1e-6
_MISSING = object()


@dataclass(frozen=True)
class Mismatch:
    """Why an emitted call is not the gold call: an error type (one of ERROR_TYPES) and a reason."""

    error: str
    reason: str


@dataclass(frozen=True)
class CallMatch:
    """The calls of one item: how many expected calls some emitted call matched, and the error types of
    those that did not (each unmatched expected call once, each unmatched emitted call as `extra_call`)."""

    matched: int
    expected: int
    emitted: int
    errors: Counter[str] = field(default_factory=Counter)


@lru_cache(maxsize=8)
def _aliases(names: frozenset[str]) -> dict[str, str]:
    """`_`-spelling -> registered name, for the spellings exactly one registered name folds to."""
    folds = Counter(n.replace(".", "_") for n in names)
    return {n.replace(".", "_"): n for n in names if folds[n.replace(".", "_")] == 1}


def canonical_name(name: str, names: Collection[str] | None = None) -> str:
    """The registered tool `name` denotes (itself, or the one tool its `_` spelling folds to), else
    `name` as written. `names`: the registered names (the registry's by default)."""
    known = registry() if names is None else names
    if name in known:  # the common case, without building the frozenset _aliases is keyed by
        return name
    return _aliases(frozenset(known)).get(name.replace(".", "_"), name)


def same_name(a: Any, b: Any, names: Collection[str] | None = None) -> bool:
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return canonical_name(a, names) == canonical_name(b, names)


def json_type(v: Any) -> str:
    """A Python value's JSON type (bool before int: True is no integer here)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object" if isinstance(v, dict) else type(v).__name__


def _kind(exp: Any, schema: dict[str, Any]) -> str:
    """The JSON type `exp`'s argument must have: the schema's, or (a union, no type, a gold value outside
    the schema) the gold value's own, an integer taking the union's `number` where it has no `integer`."""
    types, own = schema_types(schema), json_type(exp)
    if len(types) == 1 and own in (types[0], "integer" if types[0] == "number" else None):
        return types[0]
    if own == "integer" and "integer" not in types and "number" in types:
        return "number"
    return own


def _type_ok(kind: str, got: Any) -> bool:
    own = json_type(got)
    return own == kind or (kind == "number" and own == "integer")


def numbers_close(a: int | float, b: int | float) -> bool:
    """Relative tolerance only: two numbers near zero are not equal for being small."""
    try:
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=0.0)
    except OverflowError:  # an integer past the float range
        return a == b


def _string(exp: str, got: str, schema: dict[str, Any], where: str, path: bool) -> Mismatch | None:
    try:
        if path:
            same, kind = normalize_path(got) == normalize_path(exp), "path"
        elif schema.get("format") == "uri":
            same, kind = normalize_url(got) == normalize_url(exp), "url"
        else:
            same = normalize_query(got) == normalize_query(exp)
            kind = "enum" if "enum" in schema else "string"
    except ArgumentError as e:  # a path that escapes, a URL that does not parse (`http://[::1`, port 99999)
        return Mismatch("value_error:path" if path else "value_error:url", f"{where}: {e}")
    return None if same else Mismatch(f"value_error:{kind}", f"{where}: {got!r} != {exp!r}")


def _value(exp: Any, got: Any, schema: dict[str, Any], where: str, path: bool) -> Mismatch | None:
    """None when `got` matches the gold value `exp` under `schema`, else why not."""
    kind = _kind(exp, schema)
    if not _type_ok(kind, got):
        return Mismatch(f"type_error:{kind}", f"{where}: expected {kind}, got {json_type(got)}")
    if kind == "object":
        return _object(exp, got, schema, where + ".")
    if kind == "array":
        if len(got) != len(exp):
            return Mismatch("value_error:list_length", f"{where}: expected {len(exp)} items, got {len(got)}")
        for i, (e, g) in enumerate(zip(exp, got)):
            why = _value(e, g, schema.get("items", {}), f"{where}[{i}]", path)
            if why:
                return why
        return None
    if kind == "string":
        return _string(exp, got, schema, where, path)
    if kind == "number":
        same = numbers_close(exp, got)
    else:  # integer (exact), boolean, null
        same = got == exp
    return None if same else Mismatch(f"value_error:{kind}", f"{where}: {got!r} != {exp!r}")


def _object(
    exp: dict[str, Any],
    got: dict[str, Any],
    schema: dict[str, Any],
    where: str,
    path_fields: Collection[str] = (),
    accept: dict[str, Any] | None = None,
) -> Mismatch | None:
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for k in got:
        if k not in props and extra is False:
            return Mismatch("unexpected_argument", f"{where}{k}: unexpected argument")
    for k in schema.get("required", []):
        if k not in got:
            return Mismatch("missing_required", f"{where}{k}: required argument missing")
    for k in list(props) + [k for k in {**exp, **got} if k not in props]:
        if k not in got and k not in exp:  # an argument neither call sets: nothing to compare (fast path)
            continue
        sub = props.get(k, extra if isinstance(extra, dict) else {})
        rule = _rule(accept, k)
        default = sub.get("default", _MISSING) if isinstance(sub, dict) else _MISSING
        e, g = exp.get(k, default), got.get(k, _MISSING)
        path = f"{where}{k}" in path_fields or f"{where}{k}[]" in path_fields
        if g is _MISSING:
            if k not in exp or rule.get("may_omit") is True:
                continue
            if default is not _MISSING and _value(e, default, sub, f"{where}{k}", path) is None:
                continue
            return Mismatch("missing_argument", f"{where}{k}: argument missing")
        if e is _MISSING:
            return Mismatch("unexpected_argument", f"{where}{k}: unexpected argument")
        why = _value(e, g, sub, f"{where}{k}", path)
        # Widened by `accept`: another listed value, or the default where the argument may be omitted.
        alternatives = rule.get("any_of") if isinstance(rule.get("any_of"), list) else []
        if rule.get("may_omit") is True and default is not _MISSING:
            alternatives = [*alternatives, default]
        if why and any(_value(a, g, sub, f"{where}{k}", path) is None for a in alternatives):
            why = None
        if why:
            return why
    return None


def _rule(accept: Any, key: str) -> dict[str, Any]:
    """The gold call's `accept` rule for argument `key` (empty where there is none or it is malformed)."""
    rule = accept.get(key) if isinstance(accept, dict) else None
    return rule if isinstance(rule, dict) else {}


def match_call(expected: dict[str, Any], emitted: dict[str, Any]) -> Mismatch | None:
    """None when `emitted` ({name, arguments}) matches the gold call `expected` ({name, arguments,
    accept?}), else the first rule it breaks."""
    if not same_name(expected.get("name"), emitted.get("name")):
        return Mismatch("wrong_name", f"name: {emitted.get('name')!r} != {expected.get('name')!r}")
    args = emitted.get("arguments")
    if not isinstance(args, dict):
        return Mismatch("arguments_not_object", f"arguments: expected object, got {json_type(args)}")
    gold = expected.get("arguments")
    gold = gold if isinstance(gold, dict) else {}
    tool = registry().get(canonical_name(expected["name"]))
    schema = tool.parameters if tool else {}
    return _object(gold, args, schema, "", tool.path_fields if tool else (), expected.get("accept"))


def match_calls(expected: Sequence[dict[str, Any]], emitted: Sequence[dict[str, Any]]) -> CallMatch:
    """Each expected call matched by at most one distinct emitted call (order-insensitive, greedy in
    order); the error types of what is left over (module docstring)."""
    free = list(range(len(emitted)))
    missed = []
    for exp in expected:
        j = next((j for j in free if match_call(exp, emitted[j]) is None), None)
        if j is None:
            missed.append(exp)
        else:
            free.remove(j)
    errors: Counter[str] = Counter()
    for exp in missed:
        if not free:
            errors["missing_call"] += 1
            continue
        # The closest candidate: the first unmatched emitted call of the same tool, else the first left.
        j = next((j for j in free if same_name(exp.get("name"), emitted[j].get("name"))), free[0])
        free.remove(j)
        why = match_call(exp, emitted[j])
        errors[why.error if why else "extra_call"] += 1
    errors["extra_call"] += len(free)
    errors = +errors  # drop the zero count
    return CallMatch(len(expected) - len(missed), len(expected), len(emitted), errors)
