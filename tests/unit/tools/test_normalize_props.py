"""Property tests for tool-argument normalisation (kimi_student/tools/normalize.py).

Equivalent calls must share one fixture key, and normalising twice must change nothing: fixtures are
re-keyed from their stored (already normalised) key when loaded, so a non-idempotent rule turns a
recorded call into a permanent miss.
"""

from __future__ import annotations

import json
import os
import posixpath
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kimi_student.errors import ArgumentError  # noqa: E402
from kimi_student.tools.normalize import (  # noqa: E402
    fixture_key,
    normalize_arguments,
    normalize_path,
    normalize_query,
)
from kimi_student.tools.registry import TOOLS, get_tool  # noqa: E402

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOOL_NAMES = [t.name for t in TOOLS]
WHITESPACE = " \t\n\r\u00a0\u2003\u3000"


# ---- strategies built from the tools' JSON Schemas -------------------------------------------------

words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Z"]), min_size=1, max_size=8
)
safe_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789_-", min_size=1, max_size=8)
safe_path = st.lists(safe_segment, min_size=1, max_size=4).map("/".join)
hosts = st.sampled_from(
    ["example.com", "api.example.com", "docs.python.org", "github.com", "en.wikipedia.org"]
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS", "Http"]))
    host = draw(hosts)
    host = "".join(c.upper() if draw(st.booleans()) else c for c in host)
    port = draw(st.sampled_from(["", ":80", ":443", ":8080"]))
    path = "/" + "/".join(draw(st.lists(safe_segment, max_size=3)))
    query = draw(st.sampled_from(["", "?q=1", "?a=b&c=d"]))
    frag = draw(st.sampled_from(["", "#top"]))
    return f"{scheme}://{host}{port}{path}{query}{frag}"


def spellings_of_enum(e: str) -> st.SearchStrategy[str]:
    return st.sampled_from([e, e.upper(), e.title(), f" {e} ", f"{e.upper()}\t"])


def spellings_of_int(n: int) -> st.SearchStrategy[Any]:
    return st.sampled_from([n, float(n), str(n), f" {n} ", f"{n}.0"])


def value_for(schema: dict[str, Any], name: str, path_fields: tuple[str, ...]) -> st.SearchStrategy[Any]:
    t = schema.get("type")
    if isinstance(t, list):
        return st.one_of([value_for({**schema, "type": x}, name, path_fields) for x in t])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]).flatmap(spellings_of_enum)
    if t == "string":
        if name in path_fields:
            return safe_path
        if schema.get("format") == "uri":
            return urls()
        return st.text(min_size=1, max_size=20)
    if t == "integer":
        lo, hi = schema.get("minimum", -1000), schema.get("maximum", 1000)
        return st.integers(lo, hi).flatmap(spellings_of_int)
    if t == "number":
        hi = schema.get("maximum", 1000)
        return st.one_of(
            st.integers(1, int(hi)).flatmap(spellings_of_int),
            st.floats(0.01, hi, allow_nan=False, allow_infinity=False),
        )
    if t == "boolean":
        return st.sampled_from([True, False, "true", "FALSE", " True ", 0, 1])
    if t == "array":
        return st.lists(value_for(schema.get("items", {}), name, path_fields), max_size=3)
    if t == "object":
        return object_for(schema, name, path_fields)
    return st.none()


def object_for(schema: dict[str, Any], prefix: str, path_fields: tuple[str, ...]) -> st.SearchStrategy[dict]:
    props = schema.get("properties", {})
    if not props:  # free-form object: string keys, values from additionalProperties
        extra = schema.get("additionalProperties", {})
        extra = extra if isinstance(extra, dict) else {}
        return st.dictionaries(safe_segment, value_for(extra, prefix, path_fields), max_size=3)
    required = set(schema.get("required", []))
    names = lambda k: f"{prefix}.{k}" if prefix else k  # noqa: E731
    return st.fixed_dictionaries(
        {k: value_for(v, names(k), path_fields) for k, v in props.items() if k in required},
        optional={k: value_for(v, names(k), path_fields) for k, v in props.items() if k not in required},
    )


@st.composite
def tool_calls(draw: st.DrawFn, tools: list[str] = TOOL_NAMES) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(tools))
    tool = get_tool(name)
    return name, draw(object_for(tool.parameters, "", tool.path_fields))


def normalized_or_reject(name: str, args: Any) -> dict[str, Any]:
    try:
        return normalize_arguments(name, args)
    except ArgumentError:
        assume(False)
        raise


def permute(obj: Any, rnd) -> Any:
    """The same JSON value with every dict's keys in a shuffled order."""
    if isinstance(obj, dict):
        keys = list(obj)
        rnd.shuffle(keys)
        return {k: permute(obj[k], rnd) for k in keys}
    if isinstance(obj, list):
        return [permute(v, rnd) for v in obj]
    return obj


# ---- idempotence and key stability -----------------------------------------------------------------


@PROPS
@given(tool_calls())
def test_normalize_is_idempotent(call):
    name, args = call
    once = normalized_or_reject(name, args)
    assert normalize_arguments(name, once) == once
    assert fixture_key(name, once) == fixture_key(name, args)


@PROPS
@given(tool_calls(), st.randoms(use_true_random=False))
def test_normalisation_does_not_depend_on_key_order(call, rnd):
    """The normalised arguments themselves (what the broker looks up and the scorer compares), not only
    the sorted-key JSON of them, are the same whatever order the model wrote the keys in; and the key
    lists every object's keys sorted, at every depth."""
    name, args = call
    assume(_ok(name, args))
    shuffled = permute(args, rnd)
    assert normalize_arguments(name, shuffled) == normalize_arguments(name, args)
    key = fixture_key(name, shuffled)
    assert key == fixture_key(name, args)

    def sorted_pairs(pairs: list) -> dict:
        assert [k for k, _ in pairs] == sorted(k for k, _ in pairs), key
        return dict(pairs)

    json.loads(key, object_pairs_hook=sorted_pairs)


def _ok(name: str, args: Any) -> bool:
    try:
        normalize_arguments(name, args)
        return True
    except ArgumentError:
        return False


@PROPS
@given(tool_calls())
def test_normalized_args_validate_against_schema_types(call):
    """After normalisation every value has its schema type (coercion happened, nothing is left a string)."""
    name, args = call
    out = normalized_or_reject(name, args)
    props = get_tool(name).parameters["properties"]
    for k, v in out.items():
        t = props[k].get("type")
        if t == "integer":
            assert type(v) is int
        elif t == "number":
            assert type(v) in (int, float) and (type(v) is int or not v.is_integer())
        elif t == "boolean":
            assert type(v) is bool
        elif t == "string":
            assert isinstance(v, str)


# ---- query fields: case, whitespace, NFC/NFD ---------------------------------------------------------

# Characters whose case variants fold back to the same thing (excludes e.g. dotless i, whose upper case
# is plain I: no case-insensitive rule can keep those apart).
_case_stable = st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Z"]).filter(
    lambda c: c.upper().casefold() == c.casefold() == c.lower().casefold()
)
query_words = st.lists(st.text(alphabet=_case_stable, min_size=1, max_size=6), min_size=1, max_size=5)
separators = st.text(alphabet=WHITESPACE, min_size=1, max_size=3)

QUERY_FIELDS = [
    ("web.search", ("query",)),
    ("web.search", ("filters", "site")),
    ("repo.search", ("pattern",)),
]


def _with_field(path: tuple[str, ...], value: str) -> dict[str, Any]:
    return {"query": "x", path[0]: {path[1]: value}} if len(path) == 2 else {path[0]: value}


def _field(out: dict[str, Any], path: tuple[str, ...]) -> Any:
    for p in path:
        out = out[p]
    return out


@PROPS
@given(query_words, st.lists(separators, min_size=6, max_size=6), st.sampled_from(QUERY_FIELDS), st.data())
@example(["Straße", "ΣΊΣΥΦΟΣ"], [" "] * 6, ("web.search", ("query",)), None)
def test_query_invariant_under_case_whitespace_and_unicode_form(ws, seps, where, data):
    tool, path = where
    canonical = " ".join(ws)
    spaced = seps[0] + "".join(w + s for w, s in zip(ws, seps[1:] + seps * 2)).rstrip(WHITESPACE) + seps[-1]
    mixed = "".join(
        c.upper() if (data.draw(st.booleans()) if data else i % 2) else c.lower()
        for i, c in enumerate(canonical)
    )
    variants = [
        canonical,
        canonical.upper(),
        canonical.lower(),
        mixed,
        spaced,
        unicodedata.normalize("NFD", canonical),
        unicodedata.normalize("NFC", canonical),
        unicodedata.normalize("NFD", spaced.upper()),
    ]
    keys = {fixture_key(tool, _with_field(path, v)) for v in variants}
    assert len(keys) == 1
    got = _field(normalize_arguments(tool, _with_field(path, canonical)), path)
    assert got == normalize_query(canonical)
    assert got == got.strip() and "  " not in got


@PROPS
@given(st.text(max_size=30))
def test_normalize_query_is_idempotent_and_collapsed(s):
    q = normalize_query(s)
    assert normalize_query(q) == q
    assert q == q.strip()
    assert not any(c.isspace() and c != " " for c in q) and "  " not in q


@PROPS
@given(st.text(max_size=20))
def test_non_query_strings_keep_case_and_spacing(s):
    """Only declared query fields fold: code is case- and space-sensitive (NFC only)."""
    assume(s.strip())
    out = normalize_arguments("code.execute", {"language": "python", "code": s})
    assert out["code"] == unicodedata.normalize("NFC", s)


# ---- numbers: integral floats are ints ---------------------------------------------------------------


@PROPS
@given(st.integers(1, 60))
def test_integral_floats_equal_ints_for_number_field(n):
    base = {"language": "python", "code": "print(1)"}
    keys = {
        fixture_key("code.execute", {**base, "timeout_s": v})
        for v in (n, float(n), str(n), f"{n}.0", f" {n} ")
    }
    assert len(keys) == 1
    assert normalize_arguments("code.execute", {**base, "timeout_s": float(n)})["timeout_s"] == n
    assert type(normalize_arguments("code.execute", {**base, "timeout_s": float(n)})["timeout_s"]) is int
    if n == 10:  # the schema default
        assert fixture_key("code.execute", base) in keys


def test_timeout_10_spellings_share_the_default_key():
    base = {"language": "python", "code": "print(1)"}
    keys = {fixture_key("code.execute", {**base, "timeout_s": v}) for v in (10, 10.0, "10", "10.0", "1e1")}
    assert keys == {fixture_key("code.execute", base)}


@PROPS
@given(st.integers(1, 20))
def test_integer_field_spellings(n):
    keys = {fixture_key("web.search", {"query": "q", "top_k": v}) for v in (n, float(n), str(n), f"{n}.0")}
    assert len(keys) == 1


@PROPS
@given(st.floats(0.01, 59.99, allow_nan=False).filter(lambda x: not x.is_integer()))
def test_non_integral_float_kept_for_number_and_refused_for_integer(x):
    out = normalize_arguments("code.execute", {"language": "python", "code": "1", "timeout_s": x})
    assert out["timeout_s"] == x
    with pytest.raises(ArgumentError) as e:
        normalize_arguments("web.search", {"query": "q", "top_k": x})
    assert e.value.field == "top_k"


@pytest.mark.parametrize("bad", [True, False, "ten", "", float("nan"), float("inf"), "1e999", [5], {"v": 5}])
def test_bad_numbers_raise_argument_error_naming_field(bad):
    with pytest.raises(ArgumentError) as e:
        normalize_arguments("web.search", {"query": "q", "top_k": bad})
    assert e.value.field == "top_k"


# ---- enums ----------------------------------------------------------------------------------------------

ENUM_FIELDS = [
    (t.name, k, tuple(s["enum"]), tuple(t.parameters.get("required", [])))
    for t in TOOLS
    for k, s in t.parameters["properties"].items()
    if "enum" in s
]


def _minimal(name: str) -> dict[str, Any]:
    return {
        "read_file": {"path": "a.txt"},
        "file.write": {"path": "a.txt", "content": "x"},
        "web.search": {"query": "q"},
        "web.crawl": {"url": "https://example.com/a"},
        "code.execute": {"language": "python", "code": "print(1)"},
        "math.eval": {"expression": "1+1"},
        "repo.search": {"pattern": "X"},
        "http.get": {"url": "https://api.example.com/v1"},
    }[name]


def test_minimal_args_cover_every_tool():
    assert set(TOOL_NAMES) == {t for t in TOOL_NAMES if _ok(t, _minimal(t))}


@PROPS
@given(st.sampled_from(ENUM_FIELDS), st.data())
def test_enum_case_insensitive(field, data):
    name, key, enum, _ = field
    e = data.draw(st.sampled_from(enum))
    spelled = data.draw(spellings_of_enum(e))
    out = normalize_arguments(name, {**_minimal(name), key: spelled})
    assert out[key] == e
    assert fixture_key(name, {**_minimal(name), key: spelled}) == fixture_key(
        name, {**_minimal(name), key: e}
    )


@PROPS
@given(st.sampled_from(["day", "week", "month", "year", "any"]).flatmap(spellings_of_enum))
def test_nested_enum_case_insensitive(spelled):
    out = normalize_arguments("web.search", {"query": "q", "filters": {"recency": spelled}})
    assert out["filters"]["recency"] == spelled.strip().lower()


def test_array_enum_items_case_insensitive():
    out = normalize_arguments("web.crawl", {"url": "https://example.com/a", "include": ["TEXT", " Links "]})
    assert out["include"] == ["text", "links"]


# ---- defaults ------------------------------------------------------------------------------------------


@PROPS
@given(tool_calls())
def test_defaults_filled(call):
    name, args = call
    out = normalized_or_reject(name, args)
    for k, s in get_tool(name).parameters["properties"].items():
        if "default" in s:
            assert k in out
            if k not in args:
                assert out[k] == s["default"]
    opts = out.get("options")
    if name == "file.write" and isinstance(opts, dict):  # nested defaults, when the object is given
        assert opts.get("newline") in ("lf", "crlf") and isinstance(opts.get("make_dirs"), bool)


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_omitted_default_equals_explicit_default(name):
    props = get_tool(name).parameters["properties"]
    explicit = {**_minimal(name), **{k: s["default"] for k, s in props.items() if "default" in s}}
    assert fixture_key(name, _minimal(name)) == fixture_key(name, explicit)


# ---- required and unknown arguments -------------------------------------------------------------------

REQUIRED = [(t.name, r) for t in TOOLS for r in t.parameters.get("required", [])]


@PROPS
@given(tool_calls(), st.data())
def test_missing_required_argument_names_the_field(call, data):
    name, args = call
    required = get_tool(name).parameters.get("required", [])
    assume(required)
    normalized_or_reject(name, args)  # every other argument is valid, so `gone` is the only problem
    gone = data.draw(st.sampled_from(required))
    args = {k: v for k, v in args.items() if k != gone}
    with pytest.raises(ArgumentError) as e:
        normalize_arguments(name, args)
    assert e.value.field == gone
    assert gone in str(e.value)


@pytest.mark.parametrize(("name", "req"), REQUIRED)
def test_each_required_argument(name, req):
    args = {k: v for k, v in _minimal(name).items() if k != req}
    with pytest.raises(ArgumentError) as e:
        normalize_arguments(name, args)
    assert e.value.field == req


@PROPS
@given(st.sampled_from(TOOL_NAMES), safe_segment)
def test_unknown_argument_names_the_field(name, extra):
    assume(extra not in get_tool(name).parameters["properties"])
    with pytest.raises(ArgumentError) as e:
        normalize_arguments(name, {**_minimal(name), extra: 1})
    assert e.value.field == extra


@pytest.mark.parametrize("args", [None, [], "x", 3, True])
def test_non_object_arguments_raise(args):
    with pytest.raises(ArgumentError):
        normalize_arguments("math.eval", args)


# ---- paths ----------------------------------------------------------------------------------------------

path_chars = st.sampled_from(list("ab/.\\~: ") + ["..", "../", "/", "C:", "\u3000", "é", "e\u0301"])
path_like = st.lists(path_chars, max_size=12).map("".join)


def _safe(p: str) -> bool:
    parts = p.split("/")
    return (
        not p.startswith("/")
        and "\\" not in p
        and ".." not in parts
        and p not in ("", ".")
        and "" not in parts
        and "." not in parts
        and posixpath.normpath(p) == p
    )


@PROPS
@given(st.one_of(path_like, st.text(max_size=20)))
@example("../etc/passwd")
@example("a/../../b")
@example("/etc/passwd")
@example("C:\\Windows")
@example("~/x")
@example("..")
@example("...")
@example("..foo/bar")
@example("  a//b/./c/  ")
def test_normalize_path_never_escapes(raw):
    try:
        p = normalize_path(raw)
    except ArgumentError as e:
        assert e.field == "path"
        return
    assert _safe(p), p
    assert not p.startswith("../") and p != ".."


@st.composite
def noisy_paths(draw: st.DrawFn) -> str:
    """Ordinary relative paths written sloppily: `./`, doubled or back slashes, surrounding blanks."""
    segs = draw(st.lists(safe_segment, min_size=1, max_size=4))
    seps = draw(st.lists(st.sampled_from(["/", "//", "\\", "/./"]), min_size=len(segs), max_size=len(segs)))
    body = "".join(s + sep for s, sep in zip(segs, seps))[: -len(seps[-1])] + draw(st.sampled_from(["", "/"]))
    lead = draw(st.sampled_from(["", "./", " ", "\t./"]))
    return lead + body + draw(st.sampled_from(["", " ", "\n"]))


@PROPS
@given(noisy_paths())
def test_normalize_path_is_idempotent(raw):
    p = normalize_path(raw)
    assert _safe(p), p
    assert normalize_path(p) == p


@PROPS
@given(path_like)
@example("a /")
@example("a/../ b")
@example("a/../~x")
def test_normalize_path_is_idempotent_on_any_input(raw):
    try:
        p = normalize_path(raw)
    except ArgumentError:
        return
    assert normalize_path(p) == p


@pytest.mark.parametrize(
    ("raw", "fixed"),
    [
        pytest.param("a /", "a", id="trailing-space-after-normpath"),
        pytest.param("a/../ b", "b", id="leading-space-after-normpath"),
        pytest.param("a/../C:/x", None, id="drive-after-normpath"),
        pytest.param("a/../~x", None, id="tilde-after-normpath"),
    ],
)
def test_normalize_path_reaches_a_fixed_point(raw, fixed):
    """Cleaning repeats until stable: what normpath exposes (a blank, a drive, a tilde) is handled too."""
    if fixed is None:
        with pytest.raises(ArgumentError):
            normalize_path(raw)
        return
    assert normalize_path(raw) == fixed
    assert normalize_path(fixed) == fixed


@pytest.mark.parametrize("tool", ["read_file", "file.write"])
def test_path_fields_normalised_in_arguments(tool):
    args = {**_minimal(tool), "path": " ./docs//guide/../README.md "}
    assert normalize_arguments(tool, args)["path"] == "docs/README.md"
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(ArgumentError) as e:
            normalize_arguments(tool, {**_minimal(tool), "path": bad})
        assert e.value.field == "path"


# ---- URLs ------------------------------------------------------------------------------------------------


@st.composite
def url_spellings(draw: st.DrawFn) -> tuple[str, str]:
    """(the canonical URL, another spelling of it): scheme and host in any case, the default port written
    out, a fragment, surrounding whitespace. The path and query keep their case."""
    scheme, host = draw(st.sampled_from(["http", "https"])), draw(hosts)
    port = draw(st.sampled_from(["", ":8080"]))
    path = "/" + "/".join(draw(st.lists(safe_segment, max_size=3)))
    query = draw(st.sampled_from(["", "?q=1", "?a=B&c=d"]))
    canonical = f"{scheme}://{host}{port}{path}{query}"

    def cased(s: str) -> str:
        return "".join(c.upper() if draw(st.booleans()) else c for c in s)

    default = {"http": ":80", "https": ":443"}[scheme]
    port2 = port or draw(st.sampled_from(["", default]))
    frag = draw(st.sampled_from(["", "#top", "#"]))
    pad = draw(st.sampled_from(["", " ", "\t"]))
    return canonical, f"{pad}{cased(scheme)}://{cased(host)}{port2}{path}{query}{frag}{pad}"


@PROPS
@given(url_spellings())
def test_url_equivalents_share_a_key(pair):
    canonical, spelling = pair
    assert normalize_arguments("web.crawl", {"url": spelling})["url"] == canonical
    assert fixture_key("web.crawl", {"url": spelling}) == fixture_key("web.crawl", {"url": canonical})


@PROPS
@given(urls())
def test_url_normalisation_is_idempotent(u):
    out = normalize_arguments("web.crawl", {"url": u})["url"]
    assert normalize_arguments("web.crawl", {"url": out})["url"] == out


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://example.com:99999/x", id="port-out-of-range"),
        pytest.param("https://example.com:abc/x", id="port-not-a-number"),
        pytest.param("http://[bad/x", id="unclosed-ipv6-bracket"),
    ],
)
def test_malformed_url_raises_argument_error(url):
    with pytest.raises(ArgumentError) as e:
        normalize_arguments("web.crawl", {"url": url})
    assert e.value.field == "url"


def test_ipv6_url_is_idempotent():
    once = normalize_arguments("web.crawl", {"url": "http://[::1]:8080/x"})
    assert normalize_arguments("web.crawl", once) == once
