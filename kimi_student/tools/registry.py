"""The tool registry: JSON Schemas, evidence fields and normalisation hints for every tool.

`evidence` lists the result fields whose values count as evidence for strict grounding. A path is
dot-separated; `[]` walks a list, `*` takes every leaf below. Mode `lines` makes each non-empty line
of a text field its own evidence value (a file's content is never quoted whole).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from kimi_student.fingerprint import sha256_json

if TYPE_CHECKING:
    import jsonschema


@dataclass(frozen=True)
class Evidence:
    path: str
    mode: str = "value"  # value | lines


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    evidence: tuple[Evidence, ...]
    query_fields: tuple[str, ...] = ()  # NFC + case-fold + whitespace-collapsed before keying
    path_fields: tuple[str, ...] = ()  # sandbox-relative paths, normalised, no escape
    live: bool = False  # a sandboxed live implementation exists for `record` mode
    examples: tuple[dict[str, Any], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "evidence": [{"path": e.path, "mode": e.mode} for e in self.evidence],
            "query_fields": list(self.query_fields),
            "path_fields": list(self.path_fields),
            "live": self.live,
        }


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


_STR = {"type": "string", "minLength": 1}

TOOLS: tuple[Tool, ...] = (
    Tool(
        "read_file",
        "Read a text file from the workspace (paths are relative to the sandbox root).",
        _obj(
            {
                "path": _STR,
                "start_line": {"type": "integer", "minimum": 1, "default": 1},
                "max_lines": {"type": "integer", "minimum": 1, "maximum": 2000, "default": 200},
                "encoding": {"type": "string", "enum": ["utf-8", "latin-1"], "default": "utf-8"},
            },
            ["path"],
        ),
        (Evidence("path"), Evidence("content", "lines")),
        path_fields=("path",),
        live=True,
    ),
    Tool(
        "file.write",
        "Write text to a file in the workspace.",
        _obj(
            {
                "path": _STR,
                "content": {"type": "string"},
                "mode": {"type": "string", "enum": ["overwrite", "append", "create"], "default": "create"},
                "options": _obj(
                    {
                        "newline": {"type": "string", "enum": ["lf", "crlf"], "default": "lf"},
                        "make_dirs": {"type": "boolean", "default": True},
                    },
                    [],
                ),
            },
            ["path", "content"],
        ),
        (Evidence("path"), Evidence("bytes_written")),
        path_fields=("path",),
        live=True,
    ),
    Tool(
        "web.search",
        "Search the web; returns ranked results with title, url and snippet.",
        _obj(
            {
                "query": _STR,
                "top_k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
                "filters": _obj(
                    {
                        "site": {"type": "string"},
                        "recency": {"type": "string", "enum": ["day", "week", "month", "year", "any"]},
                    },
                    [],
                ),
                "lang": {"type": "string", "enum": ["en", "de", "fr", "hi"], "default": "en"},
            },
            ["query"],
        ),
        (Evidence("results[].title"), Evidence("results[].url"), Evidence("results[].snippet")),
        query_fields=("query", "filters.site"),
    ),
    Tool(
        "web.crawl",
        "Fetch a web page (and optionally follow links) and return its title and main text.",
        _obj(
            {
                "url": {"type": "string", "format": "uri", "minLength": 8},
                "max_pages": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "include": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["text", "links", "tables"]},
                },
            },
            ["url"],
        ),
        (Evidence("title"), Evidence("text", "lines"), Evidence("url")),
    ),
    Tool(
        "code.execute",
        "Run a short program in an isolated interpreter and return stdout, stderr and exit code.",
        _obj(
            {
                "language": {"type": "string", "enum": ["python", "javascript", "bash"]},
                "code": _STR,
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 60, "default": 10},
                "stdin": {"type": "string"},
            },
            ["language", "code"],
        ),
        (Evidence("stdout", "lines"),),
    ),
    Tool(
        "math.eval",
        "Evaluate an arithmetic expression exactly (no names, no calls except a few math functions).",
        _obj(
            {
                "expression": _STR,
                "precision": {"type": "integer", "minimum": 0, "maximum": 12, "default": 6},
            },
            ["expression"],
        ),
        (Evidence("value"),),
        live=True,
    ),
    Tool(
        "repo.search",
        "Search the repository for a pattern; returns matching lines with path and line number.",
        _obj(
            {
                "pattern": _STR,
                "paths": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                "case_sensitive": {"type": "boolean", "default": False},
            },
            ["pattern"],
        ),
        (Evidence("matches[].path"), Evidence("matches[].text")),
        query_fields=("pattern",),
        path_fields=("paths[]",),
        live=True,
    ),
    Tool(
        "http.get",
        "Send an HTTP GET to an allowlisted API and return status code and JSON body.",
        _obj(
            {
                "url": {"type": "string", "format": "uri", "minLength": 8},
                "params": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                },
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 30, "default": 10},
            },
            ["url"],
        ),
        (Evidence("body.*"),),
    ),
)


class UnknownToolError(KeyError):
    pass


@lru_cache(maxsize=1)
def registry() -> dict[str, Tool]:
    return {t.name: t for t in TOOLS}


def get_tool(name: str) -> Tool:
    try:
        return registry()[name]
    except KeyError:
        raise UnknownToolError(name) from None


def registry_json() -> list[dict[str, Any]]:
    return [t.to_json() for t in TOOLS]


@lru_cache(maxsize=1)
def tool_registry_sha256() -> str:
    return sha256_json(registry_json())


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    """Built once per tool. jsonschema is imported here, not with the module: `contextual gen` and
    `extract` never validate, and the import is a tenth of their start-up."""
    import jsonschema

    schema = registry()[name].parameters
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def args_valid(name: str | None, arguments: Any) -> bool:
    """The arguments satisfy the tool's JSON Schema (an unknown tool is never valid)."""
    if name not in registry() or not isinstance(arguments, dict):
        return False
    return _validator(name).is_valid(arguments)


def schema_problem(name: str, arguments: dict[str, Any]) -> tuple[str, str] | None:
    """(field, message) for the first way `arguments` break the tool's JSON Schema, or None. `tools record`
    asks this before any live call: a bound or an enum the live tool would not check itself (`start_line: 0`
    read the last line, `mode: "truncate"` overwrote a file)."""
    import jsonschema

    err = jsonschema.exceptions.best_match(_validator(name).iter_errors(arguments))
    if err is None:
        return None
    return ".".join(map(str, err.absolute_path)) or "arguments", err.message[:200]
