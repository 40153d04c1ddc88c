"""`tools.registry.args_valid`, without jsonschema's machinery: the scorer asks it of every call, and
jsonschema's generic validator (a new validator object per property it descends into) cost a tenth of
the scoring of an item.

A tool's schema is checked here only where it uses nothing but the keywords below, read as Draft
2020-12 reads them (what `jsonschema.validators.validator_for` picks for the registry's schemas): `type`
(an integer-valued float is an integer, a bool is no number), `properties`, `required`,
`additionalProperties` (false, or a schema), `items` (one schema), `enum` (of strings), `minLength`,
`minimum`, `maximum`, `exclusiveMinimum`; `default`, `format` and `description` assert nothing (no format
checker). Each keyword applies only to values of its type. Any other schema goes to jsonschema itself.
tests/unit/eval/score/test_schema_valid.py holds the two to the same answers.
"""

from __future__ import annotations

from typing import Any

from kimi_student.tools.registry import args_valid, registry

_ANNOTATIONS = frozenset({"default", "format", "description", "title"})
_KNOWN = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "minLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        *_ANNOTATIONS,
    }
)
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
_plain: dict[str, tuple[object, bool]] = {}  # tool name -> (its parameters object, whether _known)


def schema_valid(name: str | None, arguments: Any) -> bool:
    """`args_valid(name, arguments)`: the arguments satisfy the tool's JSON Schema (an unknown tool is
    never valid)."""
    tool = registry().get(name) if isinstance(name, str) else None
    if tool is None or not isinstance(arguments, dict):
        return False
    schema = tool.parameters
    kept = _plain.get(tool.name)
    if kept is None or kept[0] is not schema:
        kept = _plain[tool.name] = (schema, _known(schema))
    return _valid(schema, arguments) if kept[1] else args_valid(name, arguments)


def _known(schema: Any) -> bool:
    """Whether `schema` and its subschemas use only the keywords `_valid` reads, in the forms it reads."""
    if not isinstance(schema, dict) or not _KNOWN.issuperset(schema):
        return False
    types = schema.get("type", [])
    types = types if isinstance(types, list) else [types]
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    return (
        all(t in _TYPES for t in types)
        and isinstance(props, dict)
        and all(_known(s) for s in props.values())
        and isinstance(schema.get("required", []), list)
        and (isinstance(extra, bool) or _known(extra))
        and ("items" not in schema or _known(schema["items"]))
        and all(isinstance(e, str) for e in schema.get("enum", []))
        and all(_is_number(schema.get(k, 0)) for k in ("minLength", "minimum", "maximum", "exclusiveMinimum"))
    )


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_type(x: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(x, str)
    if kind == "object":
        return isinstance(x, dict)
    if kind == "integer":
        return isinstance(x, int) and not isinstance(x, bool) or isinstance(x, float) and x.is_integer()
    if kind == "number":
        return _is_number(x)
    if kind == "boolean":
        return isinstance(x, bool)
    if kind == "array":
        return isinstance(x, list)
    return x is None  # null


def _valid(schema: dict[str, Any], x: Any) -> bool:
    kinds = schema.get("type")
    if kinds is not None and not any(_is_type(x, k) for k in (kinds if isinstance(kinds, list) else [kinds])):
        return False
    if "enum" in schema and x not in schema["enum"]:  # of strings only (_known): equality is ==
        return False
    if isinstance(x, dict):
        if any(k not in x for k in schema.get("required", ())):
            return False
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in x.items():
            sub = props.get(k, extra)  # every property schema is a dict (_known)
            if sub is False or isinstance(sub, dict) and not _valid(sub, v):
                return False
        return True
    if isinstance(x, list):
        items = schema.get("items")
        return items is None or all(_valid(items, v) for v in x)
    if isinstance(x, str):
        return len(x) >= schema.get("minLength", 0)
    if _is_number(x):
        return not (
            "minimum" in schema
            and x < schema["minimum"]
            or "maximum" in schema
            and x > schema["maximum"]
            or "exclusiveMinimum" in schema
            and x <= schema["exclusiveMinimum"]
        )
    return True
