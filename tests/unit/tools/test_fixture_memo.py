"""A fixture file whose exact bytes were checked before is read without working out its keys again (the
memo saves an eval's parent a third of its fixture load); anything else is checked as before and refused
as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimi_student.errors import InputError
from kimi_student.integrity import ENV, seal
from kimi_student.jsonl import write_jsonl
from kimi_student.tools import broker
from kimi_student.tools.broker import load_fixtures
from kimi_student.tools.normalize import fixture_key

KEY = fixture_key("math.eval", {"expression": "1+1"})


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KIMI_STUDENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(broker, "_MEMO_MIN_BYTES", 0)  # memoise even these small files
    seal("make the key", b"")  # eval always has a key by now
    write_jsonl(
        tmp_path / "fx" / "math.eval.jsonl", [{"name": "math.eval", "key": KEY, "result": {"value": 2}}]
    )
    return tmp_path / "fx"


def _keys_not_worked_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str, args: object) -> str:
        raise AssertionError("a key was worked out again")

    monkeypatch.setattr(broker, "fixture_key", refuse)


def test_checked_bytes_load_from_the_memo(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_fixtures([folder])
    assert first == {("math.eval", KEY): {"value": 2}}
    with monkeypatch.context() as m:
        _keys_not_worked_out(m)
        assert load_fixtures([folder]) == first
        m.setenv(ENV, "ab" * 16)  # memos sealed under another key (another user or machine) are not used
        with pytest.raises(AssertionError, match="worked out again"):
            load_fixtures([folder])


def test_changed_bytes_are_checked_again_and_refused(folder: Path) -> None:
    load_fixtures([folder])
    f = folder / "math.eval.jsonl"
    f.write_text(f.read_text().replace('"value":2', '"value":3'))  # another result: loaded, checked again
    assert load_fixtures([folder]) == {("math.eval", KEY): {"value": 3}}
    f.write_text(f.read_text().replace(KEY.replace('"', '\\"'), '{\\"precision\\":2}'))  # tampered key
    with pytest.raises(InputError, match=r"math.eval.jsonl:1: key: not valid arguments"):
        load_fixtures([folder])


def test_an_unnormalised_key_is_never_memoised(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loose = '{"expression": "1+1"}'  # the same arguments, not in canonical form
    write_jsonl(folder / "math.eval.jsonl", [{"name": "math.eval", "key": loose, "result": {"value": 2}}])
    assert load_fixtures([folder]) == {("math.eval", KEY): {"value": 2}}
    with monkeypatch.context() as m:
        _keys_not_worked_out(m)
        with pytest.raises(AssertionError, match="worked out again"):
            load_fixtures([folder])


def test_a_conflict_between_two_checked_files_is_still_found(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = tmp_path / "alone"
    write_jsonl(alone / "zz.jsonl", [{"name": "math.eval", "key": KEY, "result": {"value": 5}}])
    load_fixtures([folder])
    load_fixtures([alone])  # each file's bytes checked and memoised on its own
    (folder / "zz.jsonl").write_bytes((alone / "zz.jsonl").read_bytes())
    with monkeypatch.context() as m:
        _keys_not_worked_out(m)
        with pytest.raises(InputError, match=r"zz.jsonl:1: result: conflicts with an earlier fixture"):
            load_fixtures([folder])
