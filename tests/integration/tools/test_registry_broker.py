from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from kimi_student.errors import ArgumentError, InputError
from kimi_student.jsonl import write_jsonl
from kimi_student.tools import registry as reg
from kimi_student.tools.broker import DEFAULT_FIXTURES, ToolBroker, load_fixtures, record
from kimi_student.tools.live import safe_eval
from kimi_student.tools.normalize import fixture_key
from tests.support import ks

REQUIRED = {"read_file", "file.write", "web.search", "web.crawl", "code.execute", "math.eval"}


def test_registry_has_eight_tools_with_valid_schemas_and_evidence() -> None:
    tools = reg.registry()
    assert len(tools) >= 8 and REQUIRED <= set(tools)
    for t in tools.values():
        jsonschema.Draft202012Validator.check_schema(t.parameters)
        assert t.evidence, t.name
        for q in (*t.query_fields, *t.path_fields):
            head = q.split(".")[0].removesuffix("[]")
            assert head in t.parameters["properties"], (t.name, q)


def test_registry_fingerprint_is_stable_and_tracks_schema_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    before = reg.tool_registry_sha256()
    assert len(before) == 64 and before == reg.tool_registry_sha256()
    changed = list(reg.TOOLS)
    t = changed[0]
    changed[0] = reg.Tool(
        t.name, t.description + " (changed)", t.parameters, t.evidence, t.query_fields, t.path_fields, t.live
    )
    monkeypatch.setattr(reg, "TOOLS", tuple(changed))
    reg.tool_registry_sha256.cache_clear()
    try:
        assert reg.tool_registry_sha256() != before
    finally:
        monkeypatch.undo()
        reg.tool_registry_sha256.cache_clear()
    assert reg.tool_registry_sha256() == before


def test_cli_tools_list_and_schema() -> None:
    r = ks("tools", "list")
    assert r.returncode == 0
    for name in REQUIRED:
        assert name in r.stdout
    assert reg.tool_registry_sha256() in r.stdout
    r = ks("tools", "schema", "web.search")
    assert json.loads(r.stdout)["properties"]["top_k"]["maximum"] == 20
    r = ks("tools", "schema", "no.such")
    assert r.returncode == 2 and "unknown tool" in r.stderr


def test_every_tool_has_base_fixtures_that_load() -> None:
    table = load_fixtures([DEFAULT_FIXTURES])
    assert {name for name, _ in table} == set(reg.registry())
    assert (DEFAULT_FIXTURES / "code.execute.jsonl").stat().st_size > 0


def test_broker_hits_misses_and_structured_errors() -> None:
    key = fixture_key("math.eval", {"expression": "2+2"})
    broker = ToolBroker({("math.eval", key): {"ok": True, "value": 4}})
    assert broker.call("math.eval", {"expression": "2+2", "precision": "6"}).result["value"] == 4
    miss = broker.call("math.eval", {"expression": "2+3"})
    assert not miss.hit and miss.result["error"] == "fixture_miss" and miss.result["tool"] == "math.eval"
    bad = broker.call("math.eval", {"precision": 2})
    assert bad.result["error"] == "invalid_arguments" and bad.result["field"] == "expression"
    unknown = broker.call("shell.run", {"cmd": "id"})
    assert unknown.result["error"] == "unknown_tool"
    assert broker.stats.calls == 4 and broker.stats.hits == 1 and broker.stats.hit_rate == 0.25
    assert broker.stats.misses[("math.eval", fixture_key("math.eval", {"expression": "2+3"}))] == 1
    assert sum(broker.stats.misses.values()) == 3


def test_earlier_fixture_folder_wins_and_conflicts_within_a_folder_fail(tmp_path: Path) -> None:
    key = fixture_key("math.eval", {"expression": "1+1"})
    a, b = tmp_path / "a", tmp_path / "b"
    write_jsonl(a / "math.eval.jsonl", [{"name": "math.eval", "key": key, "result": {"value": 2}}])
    write_jsonl(b / "math.eval.jsonl", [{"name": "math.eval", "key": key, "result": {"value": 3}}])
    assert load_fixtures([a, b])[("math.eval", key)] == {"value": 2}
    write_jsonl(
        b / "math.eval.jsonl",
        [
            {"name": "math.eval", "key": key, "result": {"value": 3}},
            {"name": "math.eval", "key": key, "result": {"value": 4}},
        ],
    )
    with pytest.raises(InputError, match=r"math.eval.jsonl:2: result: conflicts"):
        load_fixtures([b])


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('id')",
        "open('/etc/passwd').read()",
        "(1).__class__",
        "[x for x in ()]",
        "lambda: 1",
        "2 ** 100000",
    ],
)
def test_safe_eval_refuses_anything_but_arithmetic(expr: str) -> None:
    with pytest.raises(ArgumentError):
        safe_eval(expr)


def test_safe_eval_computes() -> None:
    assert safe_eval("(17 + 25) * 2") == 84
    assert safe_eval("2^10") == 1024
    assert abs(safe_eval("sqrt(2)") - 1.41421356) < 1e-6


def test_record_runs_in_a_copy_of_the_sandbox_and_refuses_escapes(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    (sandbox / "src").mkdir(parents=True)
    (sandbox / "src" / "a.py").write_text("LIMIT = 3\n")
    (tmp_path / "secret.txt").write_text("TOP SECRET\n")
    (sandbox / "link.txt").symlink_to(tmp_path / "secret.txt")
    out = tmp_path / "fx"
    counts = record(
        enumerate(
            [
                {"name": "read_file", "arguments": {"path": "./src//a.py"}},
                {"name": "file.write", "arguments": {"path": "new/b.txt", "content": "hé\n"}},
                {"name": "repo.search", "arguments": {"pattern": "limit"}},
            ],
            1,
        ),
        sandbox,
        out,
    )
    assert counts == {"read_file": 1, "file.write": 1, "repo.search": 1}
    assert not (sandbox / "new").exists()  # the sandbox itself is never written
    rows = {r["name"]: r for r in map(json.loads, (out / "read_file.jsonl").read_text().splitlines())}
    assert rows["read_file"]["result"]["content"] == "LIMIT = 3"
    assert json.loads(rows["read_file"]["key"])["path"] == "src/a.py"
    fw = json.loads((out / "file.write.jsonl").read_text())
    assert fw["result"]["bytes_written"] == 4
    for bad in ("../secret.txt", "/etc/passwd", "link.txt"):
        with pytest.raises(InputError, match="arguments.path"):
            record([(1, {"name": "read_file", "arguments": {"path": bad}})], sandbox, tmp_path / "fx2")
    with pytest.raises(InputError, match="replay-only"):
        record(
            [(1, {"name": "code.execute", "arguments": {"language": "python", "code": "print(1)"}})],
            sandbox,
            out,
        )


def test_cli_record_regenerates_the_committed_fixtures(tmp_path: Path) -> None:
    r = ks("tools", "record", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    for f in tmp_path.glob("*.jsonl"):
        assert f.read_bytes() == (DEFAULT_FIXTURES / f.name).read_bytes(), f.name
