"""BFCL-style matching of emitted tool calls against expected ones (`call_accuracy`: reported, not gated).

The rules, each a row of tests/test_call_match.py:
- names are equal with `.` and `_` treated alike;
- every required argument is present and no argument outside the schema appears;
- an argument left out equals its schema default, if it has one;
- values are type-checked (an int is accepted for a number, a bool never for a number) and compared after
  normalisation: strings NFC + case-fold + whitespace-collapsed, paths and URLs canonicalised, numbers with
  relative tolerance 1e-6;
- lists compare in order, objects key by key;
- parallel calls match order-insensitively (each expected call takes at most one emitted call).
"""

from __future__ import annotations

from typing import Any

from kimi_student.errors import ArgumentError
from kimi_student.numbers import numbers_equal
from kimi_student.tools.normalize import normalize_path, normalize_query, normalize_url, schema_types
from kimi_student.tools.registry import registry

_MISSING = object()


def same_name(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.replace(".", "_") == b.replace(".", "_")


def _value(exp: Any, got: Any, schema: dict[str, Any], where: str, path_field: bool) -> str | None:
    """None when `got` matches `exp` under `schema`, else why not."""
    types = schema_types(schema)
    if len(types) > 1:
        for t in types:
            if _value(exp, got, {**schema, "type": t}, where, path_field) is None:
                return None
        return f"{where}: {got!r} does not match {exp!r}"
    kind = types[0] if types else None
    if kind == "object":
        if not isinstance(got, dict):
            return f"{where}: expected object"
        if not isinstance(exp, dict):
            return f"{where}: {got!r} != {exp!r}"
        return _object(exp, got, schema, where + ".")
    if kind == "array":
        if not isinstance(got, list):
            return f"{where}: expected array"
        if not isinstance(exp, list):
            return f"{where}: {got!r} != {exp!r}"
        if len(got) != len(exp):
            return f"{where}: expected {len(exp)} items, got {len(got)}"
        for i, (e, g) in enumerate(zip(exp, got)):
            why = _value(e, g, schema.get("items", {}), f"{where}[{i}]", path_field)
            if why:
                return why
        return None
    if kind in ("integer", "number"):
        ok_type = isinstance(got, int) if kind == "integer" else isinstance(got, (int, float))
        if isinstance(got, bool) or not ok_type:
            return f"{where}: expected {kind}, got {type(got).__name__}"
        e, g = _float(exp), _float(got)
        if e is None or g is None:  # the expected value is no number (another type of the schema's)
            return None if got == exp else f"{where}: {got!r} != {exp!r}"
        return None if numbers_equal(e, g) else f"{where}: {got!r} != {exp!r}"
    if kind == "boolean":
        if not isinstance(got, bool):
            return f"{where}: expected boolean, got {type(got).__name__}"
        return None if got == exp else f"{where}: {got!r} != {exp!r}"
    if kind == "string":
        if not isinstance(got, str):
            return f"{where}: expected string, got {type(got).__name__}"
        if not isinstance(exp, str):  # the expected value is of another of the schema's types
            return f"{where}: {got!r} != {exp!r}"
        try:
            if path_field:
                return (
                    None
                    if normalize_path(got) == normalize_path(exp)
                    else f"{where}: path {got!r} != {exp!r}"
                )
        except ArgumentError as e:
            return f"{where}: {e}"
        if schema.get("format") == "uri":
            try:
                same = normalize_url(got) == normalize_url(exp)
            except ArgumentError as e:  # a URL that does not parse (`http://[::1`, port 99999)
                return f"{where}: {e}"
            return None if same else f"{where}: url {got!r} != {exp!r}"
        return None if normalize_query(got) == normalize_query(exp) else f"{where}: {got!r} != {exp!r}"
    return None if got == exp else f"{where}: {got!r} != {exp!r}"


def _float(x: Any) -> float | None:
    """`x` as a float, None if it is no number or too large for one."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    try:
        return float(x)
    except OverflowError:
        return None


def _object(
    exp: dict[str, Any],
    got: dict[str, Any],
    schema: dict[str, Any],
    where: str,
    path_fields: tuple[str, ...] = (),
) -> str | None:
    props = schema.get("properties", {})
    for k in got:
        if k not in props and schema.get("additionalProperties") is False:
            return f"{where}{k}: unexpected argument"
    for k in schema.get("required", []):
        if k not in got:
            return f"{where}{k}: required argument missing"
    extra = schema.get("additionalProperties")
    keys = list(props) + [k for k in {**exp, **got} if k not in props]
    for k in keys:
        sub = props.get(k, extra if isinstance(extra, dict) else {})
        e, g = exp.get(k, sub.get("default", _MISSING)), got.get(k, sub.get("default", _MISSING))
        if e is _MISSING and g is _MISSING:
            continue
        if e is _MISSING:
            return f"{where}{k}: unexpected argument"
        if g is _MISSING:
            return f"{where}{k}: argument missing"
        why = _value(e, g, sub, f"{where}{k}", f"{where}{k}" in path_fields)
        if why:
            return why
    return None


def match_call(expected: dict[str, Any], emitted: dict[str, Any]) -> str | None:
    """None when `emitted` ({name, arguments}) matches `expected`, else the first reason it does not."""
    if not same_name(expected.get("name"), emitted.get("name")):
        return f"name: {emitted.get('name')!r} != {expected.get('name')!r}"
    tool = registry().get(expected["name"])
    args = emitted.get("arguments")
    if not isinstance(args, dict):
        return "arguments: expected object"
    if tool is None:
        return None if args == expected.get("arguments") else "arguments differ"
    return _object(expected.get("arguments", {}), args, tool.parameters, "", tool.path_fields)


def match_calls(expected: list[dict[str, Any]], emitted: list[dict[str, Any]]) -> int:
    """How many expected calls some distinct emitted call matches (order-insensitive, greedy in order)."""
    free = list(range(len(emitted)))
    matched = 0
    for exp in expected:
        for j in free:
            if match_call(exp, emitted[j]) is None:
                free.remove(j)
                matched += 1
                break
    return matched
