"""ToolBroker: deterministic replay of tool results from fixtures.

A fixture is `{name, key, result}` with `key` the canonical JSON of the normalised arguments.
A call either hits (the recorded result is returned) or misses (a structured error result is
returned and the miss is counted with its (tool, key)). The broker never executes anything.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kimi_student import fingerprint, jsonl
from kimi_student.errors import ArgumentError, InputError
from kimi_student.fingerprint import (
    cache_dir,
    canonical_json,
    memo_read,
    memo_write,
    sha256_bytes,
    sha256_file_sequence,
    sha256_files,
)
from kimi_student.jsonl import gc_paused, read_jsonl, write_jsonl
from kimi_student.resources import package_path
from kimi_student.tools import normalize
from kimi_student.tools import registry as tool_registry
from kimi_student.tools.live import LIVE
from kimi_student.tools.normalize import fixture_key
from kimi_student.tools.registry import UnknownToolError, registry, schema_problem

DEFAULT_FIXTURES = package_path("tools", "fixtures")  # the base set, recorded by `tools record`


@dataclass(frozen=True)
class Fixture:
    name: str
    key: str
    result: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "result": self.result}


@dataclass
class BrokerReply:
    hit: bool
    key: str
    result: dict[str, Any]


@dataclass
class BrokerStats:
    calls: int = 0
    hits: int = 0
    misses: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.calls if self.calls else None


def fixture_files(folder: Path) -> list[Path]:
    """The fixture files of a folder, by name; a `*.jsonl` that is not a file (a folder) is bad input."""
    files = sorted(folder.glob("*.jsonl"))
    for f in files:
        if not f.is_file():
            raise InputError(f, None, None, "a fixture file must be a file, not a folder")
    return files


def load_fixtures(folders: Iterable[str | Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """Index fixtures by (tool, normalised key). An earlier folder wins over a later one (a dataset's own
    fixtures over the project's base set); two results for one key within a folder are an error."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    with gc_paused():  # tens of thousands of objects that all stay alive: nothing to collect
        for folder in folders:
            for k, v in _load_folder(Path(folder)).items():
                merged.setdefault(k, v)
    return merged


_MEMO_MIN_BYTES = 16 << 10  # a smaller file is checked in a millisecond: not worth a memo in the cache


def _load_folder(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    table: dict[tuple[str, str], dict[str, Any]] = {}
    if not folder.is_dir():
        raise InputError(folder, None, None, "fixture folder not found")
    for path in fixture_files(folder):
        data = path.read_bytes()
        if len(data) < _MEMO_MIN_BYTES:
            _load_file(path, table)
            continue
        identity = f"kimi-student fixture file checked {sha256_bytes(data)} {_rules_sha256()}"
        memo = cache_dir() / "fixtures" / f"checked-{sha256_bytes(identity.encode())[:32]}.json"
        if memo_read(memo, identity) == "ok":
            _load_checked(path, data, table)
            continue
        own = _load_file(path, table)
        try:
            same = _load_checked(path, data, {}) == own  # the bytes memoised are the bytes checked
        except (ValueError, KeyError, TypeError, RecursionError, InputError):
            same = False
        if same:
            memo_write(memo, identity, "ok")
    return table


def _load_file(path: Path, table: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """Every row of a fixture file checked, its key worked out again from its arguments, put in `table`
    (its folder's); the file's own rows returned. 10k fixtures: a tenth of a second, hence the memo of
    the files checked before."""
    own: dict[tuple[str, str], Any] = {}
    for lineno, row in read_jsonl(path):
        for fld, typ in (("name", str), ("key", str), ("result", dict)):
            if not isinstance(row.get(fld), typ):
                raise InputError(path, lineno, fld, f"missing or not a {typ.__name__}")
        try:
            key = fixture_key(row["name"], json.loads(row["key"]))
        except UnknownToolError:
            raise InputError(path, lineno, "name", f"unknown tool {row['name']!r}") from None
        except (json.JSONDecodeError, ArgumentError) as e:
            raise InputError(path, lineno, "key", f"not valid arguments: {e}") from None
        _put(table, (row["name"], key), row["result"], path, lineno)
        own[row["name"], key] = row["result"]
    return own


def _load_checked(
    path: Path, data: bytes, table: dict[tuple[str, str], dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows of a fixture file whose exact bytes `_load_file` checked before (every key already its
    own normal form), put in `table` as they stand: only a conflict with another file is looked for."""
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            row = json.loads(line)
            _put(table, (row["name"], row["key"]), row["result"], path, lineno)
    return table


def _put(table: dict[tuple[str, str], Any], k: tuple[str, str], result: Any, path: Path, line: int) -> None:
    """Two results for one key within a folder are an error."""
    prev = table.get(k)
    if prev is not None and prev != result:
        raise InputError(path, line, "result", f"conflicts with an earlier fixture for {k[1]}")
    table[k] = result


@cache
def _rules_sha256() -> str:
    """The code a fixture key's normal form and its checks depend on (this module, the normalisation, the
    registry's schemas, canonical JSON, what JSONL reading refuses): a memo of a file checked under other
    code does not apply."""
    return sha256_files(
        Path(str(m.__file__)) for m in (sys.modules[__name__], normalize, tool_registry, fingerprint, jsonl)
    )


def fixtures_sha256(folders: Iterable[str | Path]) -> str:
    """The fixtures a broker replays, in its precedence order: folder by folder as given (an earlier one
    wins), files by name. It used to sort by full path, so the digest changed with where the dataset and
    the package lie; the order given is the order that matters."""
    return sha256_file_sequence(p for f in folders for p in fixture_files(Path(f)))


class ToolBroker:
    """Replays fixtures. `call` never raises on model mistakes: it answers with an error result."""

    def __init__(self, fixtures: dict[tuple[str, str], dict[str, Any]]):
        self.fixtures = fixtures
        self.stats = BrokerStats()

    @classmethod
    def from_folders(cls, folders: Iterable[str | Path]) -> ToolBroker:
        return cls(load_fixtures(folders))

    def lookup(self, name: str, arguments: Any) -> BrokerReply:
        """Replay without counting (used by verify)."""
        try:
            key = fixture_key(name, arguments)
        except UnknownToolError:
            return BrokerReply(
                False, canonical_json(arguments), {"ok": False, "error": "unknown_tool", "tool": name}
            )
        except ArgumentError as e:
            return BrokerReply(
                False,
                canonical_json(arguments),
                {"ok": False, "error": "invalid_arguments", "field": e.field, "message": str(e)},
            )
        result = self.fixtures.get((name, key))
        if result is None:
            return BrokerReply(False, key, {"ok": False, "error": "fixture_miss", "tool": name, "key": key})
        return BrokerReply(True, key, result)

    def call(self, name: str, arguments: Any) -> BrokerReply:
        reply = self.lookup(name, arguments)
        self.stats.calls += 1
        if reply.hit:
            self.stats.hits += 1
        else:
            self.stats.misses[(name, reply.key)] += 1
        return reply


def record(
    calls: Iterable[tuple[int, dict[str, Any]]],
    sandbox: str | Path,
    out_dir: str | Path,
    source: str | Path | None = None,
) -> dict[str, int]:
    """Run live tools on a scratch copy of `sandbox` and write one fixture file per tool.

    `calls` are (line, call) pairs of the calls file `source`, which bad input names. Every call is checked
    against its tool's schema and run before anything is written, so a refused call leaves no output.
    The sandbox itself is never modified (file.write lands in the copy). Replay-only tools are refused.
    """
    sandbox = Path(sandbox)
    if not sandbox.is_dir():
        raise InputError(sandbox, None, None, "sandbox folder not found")
    per_tool: dict[str, dict[str, Fixture]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "sandbox"
        shutil.copytree(sandbox, scratch, symlinks=True)
        for line, call in calls:
            name, key, result = _record_one(call, scratch, source, line)
            per_tool.setdefault(name, {})[key] = Fixture(name, key, result)
    out = Path(out_dir)
    for name, fixtures in per_tool.items():
        write_jsonl(out / f"{name}.jsonl", (f.to_json() for _, f in sorted(fixtures.items())))
    return {name: len(f) for name, f in per_tool.items()}


def _record_one(
    call: dict[str, Any], scratch: Path, source: str | Path | None, line: int
) -> tuple[str, str, dict[str, Any]]:
    """(tool, key, result) of one live call; InputError for a call that must not run."""
    name = call.get("name")
    if name not in registry():
        raise InputError(source, line, "name", f"unknown tool {name!r}")
    if name not in LIVE:
        raise InputError(source, line, "name", f"{name} is replay-only: write its fixtures by hand")
    try:
        key = fixture_key(name, call.get("arguments"))
        args = json.loads(key)
        problem = schema_problem(name, args)
        if problem:
            raise InputError(source, line, f"arguments.{problem[0]}", problem[1])
        result = LIVE[name](args, scratch)
    except ArgumentError as e:
        raise InputError(source, line, f"arguments.{e.field}", str(e)) from None
    try:
        canonical_json(result)
    except (TypeError, ValueError) as e:  # a live tool's result must be a fixture: finite JSON numbers
        result = {"ok": False, "error": f"the result is not JSON: {e}"[:200]}
    return name, key, result
