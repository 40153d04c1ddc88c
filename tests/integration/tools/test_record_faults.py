"""`tools record` on hostile calls (review reliability.md D12): every math or file-system fault is the
tool's error result, a call outside the tool's schema is refused with one line and exit 2 before any live
call, and nothing is left half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import ks, read_rows, write_rows

MATH = [
    "((9**999)**999)**999",  # ran for minutes: the base of a power was unbounded
    "10.0**400",
    "exp(1000)",
    "sqrt(-1)",
    "log(0)",
    "(-8)**0.5",
    "min()",
    "max(1)",
    "floor(1e308*10)",
    "1e308*10",
    "(10**1000)**1000",
    "9**999*9**999*9**999*9**999*9**999",
    "round(1, -10**9)",  # never ended: round builds 10**(10**9)
]
FILES = [
    ("read_file", {"path": "a\u0000b"}),
    ("read_file", {"path": "a" * 300}),
    ("read_file", {"path": "bin.dat"}),
    ("read_file", {"path": "docs"}),
    ("file.write", {"path": "README.md/x", "content": "x"}),
    ("file.write", {"path": "docs", "content": "x", "mode": "overwrite"}),
    ("file.write", {"path": "b" * 300, "content": "x"}),
]


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    box = tmp_path / "sandbox"
    (box / "docs").mkdir(parents=True)
    (box / "README.md").write_text("# repo\nline two\n", encoding="utf-8")
    (box / "bin.dat").write_bytes(b"\xff\xfe\x00binary")
    return box


def _record(tmp_path: Path, sandbox: Path, calls: list[tuple[str, dict]]):  # noqa: ANN202
    src = write_rows(tmp_path / "calls.jsonl", [{"name": n, "arguments": a} for n, a in calls])
    out = tmp_path / "fx"
    return ks("tools", "record", "--calls", src, "--sandbox", sandbox, "--out", out), src, out


def test_math_faults_are_tool_errors_and_bounded(tmp_path: Path, sandbox: Path) -> None:
    r, _, out = _record(tmp_path, sandbox, [("math.eval", {"expression": e}) for e in MATH])
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rows = {json.loads(row["key"])["expression"]: row["result"] for row in read_rows(out / "math.eval.jsonl")}
    assert set(rows) == set(MATH)
    for expr, result in rows.items():
        assert result["ok"] is False and isinstance(result["error"], str), (expr, result)


def test_file_faults_are_tool_errors(tmp_path: Path, sandbox: Path) -> None:
    r, _, out = _record(tmp_path, sandbox, FILES)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    results = [row["result"] for f in ("read_file", "file.write") for row in read_rows(out / f"{f}.jsonl")]
    assert len(results) == len(FILES)
    assert all(res["ok"] is False and res["error"] for res in results), results
    errors = {res["error"] for res in results}
    assert {"the path is a folder", "a parent of the path is a file", "File name too long"} <= errors
    assert any(e.startswith("not utf-8 text") for e in errors) and any("null" in e for e in errors)


@pytest.mark.parametrize(
    "name, arguments, field",
    [
        ("read_file", {"path": "README.md", "start_line": 0}, "arguments.start_line"),
        ("read_file", {"path": "README.md", "max_lines": -1}, "arguments.max_lines"),
        ("read_file", {"path": "README.md", "encoding": "rot13"}, "arguments.encoding"),
        ("math.eval", {"expression": "1+1", "precision": 13}, "arguments.precision"),
        ("file.write", {"path": "README.md", "content": "x", "mode": "truncate"}, "arguments.mode"),
    ],
)
def test_schema_is_enforced_before_the_live_call(
    name: str, arguments: dict, field: str, tmp_path: Path, sandbox: Path
) -> None:
    ok = ("math.eval", {"expression": "1+1"})
    r, src, out = _record(tmp_path, sandbox, [ok, (name, arguments)])
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{src}:2: {field}: " in lines[0], r.stderr
    assert not out.exists()  # no fixtures, not even an empty folder
    assert (sandbox / "README.md").read_text(encoding="utf-8") == "# repo\nline two\n"
