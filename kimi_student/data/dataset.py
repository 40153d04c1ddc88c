"""Reading a contextual dataset with every fault named by file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kimi_student.errors import InputError
from kimi_student.fingerprint import sha256_dir
from kimi_student.jsonl import gc_paused, read_jsonl
from kimi_student.outputs import aside_path
from kimi_student.tools.broker import DEFAULT_FIXTURES
from kimi_student.tools.registry import registry

BEHAVIOURS = ("normal", "no_tool", "decline", "retry")
_ITEM_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("id", str),
    ("role", str),
    ("task_type", str),
    ("caws_level", int),
    ("prompt", str),
    ("teacher_text", str),
    ("metadata", dict),
)
_META_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("scenario", str),
    ("complexity", str),
    ("structure", str),
    ("expected_behaviour", str),
    ("locale", str),
    ("call_sequence", list),
    ("tool_results", list),
    ("integration_spans_bytes", list),
    ("negative_control", bool),
)
_TYPE_NAMES = {str: "string", int: "integer", dict: "object", list: "array", bool: "boolean"}


def _need(obj: dict[str, Any], key: str, typ: Any, where: str, path: Path, line: int) -> Any:
    if key not in obj:
        raise InputError(path, line, where + key, "missing field")
    val = obj[key]
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        raise InputError(
            path, line, where + key, f"expected {_TYPE_NAMES.get(typ, typ)}, got {type(val).__name__}"
        )
    return val


def validate_item(item: dict[str, Any], path: Path, line: int) -> None:
    """Raise InputError naming the first field that is missing or of the wrong type. Each check first
    asks whether the value's type is exactly the one wanted (what JSON gives), and only otherwise goes
    the long way (`_need`), which accepts a subclass or says what is wrong: reading 10k items spent
    two fifths of its time here."""
    for key, typ in _ITEM_FIELDS:
        if type(item.get(key)) is not typ:
            _need(item, key, typ, "", path, line)
    meta = item["metadata"]
    for key, typ in _META_FIELDS:
        if type(meta.get(key)) is not typ:
            _need(meta, key, typ, "metadata.", path, line)
    if meta["expected_behaviour"] not in BEHAVIOURS:
        raise InputError(path, line, "metadata.expected_behaviour", f"must be one of {', '.join(BEHAVIOURS)}")
    tools = registry()
    for field, payload in (("call_sequence", "arguments"), ("tool_results", "result")):
        for i, entry in enumerate(meta[field]):
            if type(entry) is dict and type(name := entry.get("name")) is str and name in tools:
                if type(entry.get(payload)) is dict:
                    continue
            _check_entry(entry, payload, tools, f"metadata.{field}[{i}].", path, line)
    if len(meta["tool_results"]) != len(meta["call_sequence"]):
        raise InputError(
            path, line, "metadata.tool_results", "must have one result per call in call_sequence"
        )
    _check_spans(meta["integration_spans_bytes"], "metadata.integration_spans_bytes", path, line)
    if (tok_spans := meta.get("integration_spans_tokens")) is not None:  # written by extract
        if type(tok_spans) is not list:
            _need(meta, "integration_spans_tokens", list, "metadata.", path, line)
        _check_spans(tok_spans, "metadata.integration_spans_tokens", path, line)
    if (adv := meta.get("adversarial")) is not None and not (
        type(adv) is dict and type(adv.get("kind", "")) is str
    ):
        _check_adversarial(adv, path, line)


def _check_spans(spans: list[Any], where: str, path: Path, line: int) -> None:
    for i, span in enumerate(spans):
        if not (type(span) is list and len(span) == 2 and type(span[0]) is int and type(span[1]) is int):
            raise InputError(path, line, f"{where}[{i}]", "expected [start, end] integers")


def _check_adversarial(adv: Any, path: Path, line: int) -> None:
    """The slow path: say what is wrong with `metadata.adversarial` (null, or an object with a string `kind`)."""
    if not isinstance(adv, dict):
        raise InputError(
            path, line, "metadata.adversarial", f"expected object or null, got {type(adv).__name__}"
        )
    _need(adv, "kind", str, "metadata.adversarial.", path, line)


def _check_entry(entry: Any, payload: str, tools: dict[str, Any], where: str, path: Path, line: int) -> None:
    if not isinstance(entry, dict):
        raise InputError(path, line, where[:-1], "expected object")
    name = _need(entry, "name", str, where, path, line)
    if name not in tools:
        raise InputError(path, line, where + "name", f"unknown tool {name!r}")
    _need(entry, payload, dict, where, path, line)


def read_dataset(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, items). The header must be line 1; ids must be unique."""
    with gc_paused():
        return _read_dataset(Path(path))


def _read_dataset(p: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] | None = None
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(p):
        if header is None:
            if obj.get("__header__") is not True:
                raise InputError(p, line, "__header__", "line 1 must be the dataset header")
            header = obj
            continue
        validate_item(obj, p, line)
        if obj["id"] in seen:
            raise InputError(p, line, "id", f"duplicate id {obj['id']!r} (first on line {seen[obj['id']]})")
        seen[obj["id"]] = line
        items.append(obj)
    if header is None:
        raise InputError(p, None, "__header__", "empty dataset")
    return header, items


def dataset_fixture_dirs(dataset: Path, header: dict[str, Any]) -> list[Path]:
    """The fixtures written with the dataset (if any), then the project's base fixtures. While `contextual
    gen` swaps a dataset and its fixtures (or after a kill in the middle), the old folder is set aside:
    the dataset on disk may still be the old one, and then that folder is its fixtures."""
    dirs = []
    if header.get("fixtures_dir"):
        folder = (dataset.parent / header["fixtures_dir"]).resolve()
        aside = aside_path(folder)
        dirs.append(aside if aside.is_dir() and _digest_is(header, aside) else folder)
    dirs.append(DEFAULT_FIXTURES)
    return dirs


def _digest_is(header: dict[str, Any], folder: Path) -> bool:
    return header.get("fixtures_sha256") == sha256_dir(folder, "*.jsonl")


def fixtures_belong(dataset: Path, folder: Path) -> bool:
    """Whether `folder` holds the fixtures of the dataset at `dataset` (its header's fixtures_sha256)."""
    try:
        with open(dataset, "rb") as fh:
            header = json.loads(fh.readline())
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and _digest_is(header, folder)
