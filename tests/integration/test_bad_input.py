"""Bad input: one line naming file, line and field; exit code 2; no partial output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import ks, ks_here, read_rows


def _mutate(rows: list[dict], fn) -> bytes:  # noqa: ANN001
    rows = json.loads(json.dumps(rows))
    out = fn(rows)
    if isinstance(out, bytes):
        return out
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _lines(rows: list[dict]) -> list[bytes]:
    return [(json.dumps(r, ensure_ascii=False) + "\n").encode() for r in rows]


def _set(path: list, value: object):  # noqa: ANN202
    def fn(rows: list[dict]) -> None:
        obj = rows[3]
        for k in path[:-1]:
            obj = obj[k]
        if value is KeyError:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value

    return fn


CASES = {
    "malformed_json": (
        lambda rows: b"".join(_lines(rows)[:3]) + b'{"id": "x", oops}\n' + b"".join(_lines(rows)[4:]),
        ":4: -: malformed JSON",
    ),
    "missing_field": (_set(["teacher_text"], KeyError), ":4: teacher_text: missing field"),
    "wrong_type": (
        _set(["metadata", "call_sequence"], "web.search"),
        ":4: metadata.call_sequence: expected array, got str",
    ),
    "unknown_tool": (lambda rows: _first_call(rows, "shell.exec"), "name: unknown tool 'shell.exec'"),
    "truncated": (lambda rows: b"".join(_lines(rows)[:5]) + _lines(rows)[5][:40], ":6: -: truncated JSON"),
    "non_utf8": (
        lambda rows: b"".join(_lines(rows)[:2]) + _lines(rows)[2][:30] + b"\xff\xfe" + _lines(rows)[2][30:],
        ":3: -: not valid UTF-8",
    ),
}


def _first_call(rows: list[dict], name: str) -> None:
    for r in rows[1:]:
        if r["metadata"]["call_sequence"]:
            r["metadata"]["call_sequence"][0]["name"] = name
            return


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("stage", ["eval", "extract", "verify"])
def test_bad_dataset_line(case: str, stage: str, dataset: dict[str, Path], tmp_path: Path) -> None:
    fn, expected = CASES[case]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_mutate(read_rows(dataset["final"]), fn))
    out, rep = tmp_path / "out.jsonl", tmp_path / "rep.json"
    args = {
        "eval": ("eval", "--runner", "verification_only", "--in", bad, "--out", out, "--report", rep),
        "extract": ("contextual", "extract", "--in", bad, "--out", out),
        "verify": ("contextual", "verify", "--in", bad, "--report", rep),
    }[stage]
    r = ks_here(*args)  # the real CLI in this process: every case refuses before any work
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(bad) in lines[0] and expected in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists() and not rep.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


@pytest.mark.parametrize(
    "content, expected",
    [
        (b'{"id": "x"}\n', ":1: output: missing field"),
        (b'{"id": "x", "output": 5}\n', ":1: output: expected string, got int"),
        (b'{"id": "x", "output": "ok"', ":1: -: truncated JSON"),
        (b'{"id": "no-such-item", "output": "hi"}\n', ": id: 1 ids not in the dataset"),
    ],
)
def test_bad_predictions_file(
    content: bytes, expected: str, dataset: dict[str, Path], tmp_path: Path
) -> None:
    pred = tmp_path / "pred.jsonl"
    pred.write_bytes(content)
    out, rep = tmp_path / "new" / "deeper" / "o.jsonl", tmp_path / "r.json"  # folders the run would make
    r = ks_here(
        "eval",
        "--runner",
        "predictions",
        "--predictions",
        pred,
        "--in",
        dataset["final"],
        "--out",
        out,
        "--report",
        rep,
    )
    assert r.returncode == 2
    assert expected in r.stderr and str(pred) in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not rep.exists() and not (tmp_path / "new").exists()  # nothing left, not even an empty folder


def test_missing_input_file_is_a_clear_error(tmp_path: Path) -> None:
    r = ks("contextual", "verify", "--in", tmp_path / "nope.jsonl", "--report", tmp_path / "r.json")
    assert r.returncode == 2 and "nope.jsonl: -: file not found" in r.stderr
