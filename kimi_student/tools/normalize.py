"""Normalise tool arguments from the tool's JSON Schema, so that equivalent calls share one fixture key.

Pure functions. The rules:
- types are coerced where the intent is unambiguous ("5" -> 5 for integers, 10.0 -> 10, "true" -> True);
- defaults declared in the schema are filled in;
- enum strings match case-insensitively and take the schema's spelling;
- every string is NFC; query-like fields are also case-folded and whitespace-collapsed;
- path fields become sandbox-relative POSIX paths that cannot escape the sandbox;
- URLs get a lower-case scheme and host, no default port and no fragment.
"""

from __future__ import annotations

import math
import posixpath
import re
import unicodedata
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kimi_student.errors import ArgumentError
from kimi_student.fingerprint import canonical_json
from kimi_student.tools.registry import Tool, get_tool

_WS = re.compile(r"\s+")
_INT_RE = re.compile(r"[+-]?\d+")
_NUM_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def normalize_query(text: str) -> str:
    """NFC, case-fold, collapse whitespace. The one text rule: query fields of fixture keys, and the
    scorer's comparison of text (grounding values and spans, call arguments, tool-span pairs), so a value
    that finds its fixture also matches in scoring. A short text is remembered: the scorer normalises each
    argument of a call four times (fixture key, call match, tool-span pairs, gold and emitted)."""
    if type(text) is str and len(text) <= _REMEMBERED:
        return _normalized(text)
    return _WS.sub(" ", unicodedata.normalize("NFC", text).casefold()).strip()


_REMEMBERED = 256  # longer texts (a file's content) are rarely asked twice and would fill the cache


@lru_cache(maxsize=16384)
def _normalized(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFC", text).casefold()).strip()


def normalize_path(raw: str, field: str = "path") -> str:
    """A sandbox-relative POSIX path; absolute paths and `..` escapes are refused.

    Cleaning repeats until nothing changes, so the result is a fixed point (normalising twice is a no-op)."""
    p = unicodedata.normalize("NFC", raw)
    while True:
        cleaned = posixpath.normpath(p.strip().replace("\\", "/"))
        if cleaned.startswith("/") or re.match(r"^[A-Za-z]:(/|$)", cleaned) or cleaned.startswith("~"):
            raise ArgumentError(field, f"absolute path {raw!r} is outside the sandbox")
        if cleaned in (".", "") or cleaned == ".." or cleaned.startswith("../"):
            raise ArgumentError(field, f"path {raw!r} escapes the sandbox")
        if cleaned == p:
            return p
        p = cleaned


def normalize_url(raw: str, field: str = "url") -> str:
    """Lower-case scheme and host, no default port, no fragment. IPv6 hosts keep their brackets."""
    try:
        u = urlsplit(unicodedata.normalize("NFC", raw.strip()))
        scheme, host, port = u.scheme.lower(), (u.hostname or "").lower(), u.port
    except ValueError as e:  # a port out of range, a broken IPv6 literal
        raise ArgumentError(field, f"malformed URL {raw!r}: {e}") from None
    if ":" in host:
        host = f"[{host}]"
    if port and (scheme, port) not in (("http", 80), ("https", 443)):
        host += f":{port}"
    return urlunsplit((scheme, host, u.path or "/", u.query, ""))


def _number(value: Any, field: str, integer: bool) -> int | float:
    if isinstance(value, bool):
        raise ArgumentError(field, f"expected {'integer' if integer else 'number'}, got boolean")
    if isinstance(value, str):
        s = value.strip()
        if integer and _INT_RE.fullmatch(s):
            return int(s)
        if _NUM_RE.fullmatch(s):
            value = float(s)
        else:
            raise ArgumentError(field, f"expected {'integer' if integer else 'number'}, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArgumentError(field, "number must be finite")
        if value.is_integer():
            return int(value)
        if integer:
            raise ArgumentError(field, f"expected integer, got {value!r}")
        return value
    raise ArgumentError(field, f"expected {'integer' if integer else 'number'}, got {type(value).__name__}")


def _boolean(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ArgumentError(field, f"expected boolean, got {value!r}")


def schema_types(schema: dict[str, Any]) -> list[str]:
    """A schema's `type` as a list: a union keeps its order, no type is empty."""
    t = schema.get("type")
    return t if isinstance(t, list) else [t] if t else []


def _coerce(value: Any, schema: dict[str, Any], field: str) -> Any:
    types = schema_types(schema)
    if len(types) > 1:  # a union: keep the first type that takes the value as it is
        for t in types:
            try:
                return _coerce(value, {**schema, "type": t}, field)
            except ArgumentError:
                continue
        raise ArgumentError(field, f"expected one of {types}, got {type(value).__name__}")
    kind = types[0] if types else None
    if kind == "object":
        return _object(value, schema, field)
    if kind == "array":
        items = value if isinstance(value, list) else [value]
        return [_coerce(v, schema.get("items", {}), f"{field}[{i}]") for i, v in enumerate(items)]
    if kind == "integer":
        return _number(value, field, integer=True)
    if kind == "number":
        return _number(value, field, integer=False)
    if kind == "boolean":
        return _boolean(value, field)
    if kind == "string":
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            raise ArgumentError(field, f"expected string, got {type(value).__name__}")
        s = unicodedata.normalize("NFC", str(value))
        if "enum" in schema:
            by_fold = {str(e).casefold(): e for e in schema["enum"]}
            s = by_fold.get(s.strip().casefold(), s)
        if schema.get("format") == "uri":
            s = normalize_url(s, field)
        return s
    return value


def _object(value: Any, schema: dict[str, Any], field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ArgumentError(field or "arguments", f"expected object, got {type(value).__name__}")
    props: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for key, val in value.items():
        sub = f"{field}.{key}" if field else key
        if key in props:
            out[key] = _coerce(val, props[key], sub)
        elif extra is False:
            raise ArgumentError(sub, "unexpected argument")
        elif isinstance(extra, dict):
            out[key] = _coerce(val, extra, sub)
        else:
            out[key] = val
    for req in schema.get("required", []):
        if req not in out:
            raise ArgumentError(f"{field}.{req}" if field else req, "required argument missing")
    for key, sub in props.items():
        if key not in out and "default" in sub:
            out[key] = sub["default"]
    return out


def _apply(args: dict[str, Any], dotted: str, fn: Any) -> None:
    """Apply `fn` to the string(s) at `dotted` ("a.b", or "a[]" for every item of a list)."""
    head, _, rest = dotted.partition(".")
    name = head.removesuffix("[]")
    if name not in args:
        return
    if rest:
        if isinstance(args[name], dict):
            _apply(args[name], rest, fn)
    elif head.endswith("[]") and isinstance(args[name], list):
        args[name] = [fn(v, f"{name}[{i}]") if isinstance(v, str) else v for i, v in enumerate(args[name])]
    elif isinstance(args[name], str):
        args[name] = fn(args[name], dotted)


def normalize_arguments(tool: Tool | str, arguments: Any) -> dict[str, Any]:
    """Normalised arguments, or ArgumentError naming the offending field."""
    t = get_tool(tool) if isinstance(tool, str) else tool
    out = _object(arguments, t.parameters, "")
    for f in t.query_fields:
        _apply(out, f, lambda s, _f: normalize_query(s))
    for f in t.path_fields:
        _apply(out, f, normalize_path)
    return out


def fixture_key(tool: Tool | str, arguments: Any) -> str:
    """The canonical JSON of the normalised arguments: how a fixture is found."""
    return canonical_json(normalize_arguments(tool, arguments))
