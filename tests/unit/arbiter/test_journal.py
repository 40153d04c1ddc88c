"""judge eval's journal: chunks read back under the same key; a torn last line dropped (the file stays
appendable); another run's journal, a file that is not one and a broken line refused with file, line and
what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimi_student.arbiter.journal import Journal, journal_path
from kimi_student.errors import InputError

KEY = {"model_fingerprint": "m1", "limit": 10, "max_new_tokens": 900}


def test_chunks_come_back_under_the_same_key(tmp_path: Path) -> None:
    path = journal_path(tmp_path / "caws_eval.json")
    assert path.name == "caws_eval.journal.jsonl"
    j = Journal(path, KEY)
    j.add("singles", 0, ['{"status": "PASS"}', "x"])
    j.add("probabilities", 8, [{"PASS": 0.5, "FAIL": 0.25, "WAIVER_REQUIRED": 0.25}])
    again = Journal(path, dict(KEY))
    assert again.get("singles", 0) == ['{"status": "PASS"}', "x"]
    assert again.get("probabilities", 8) == [{"PASS": 0.5, "FAIL": 0.25, "WAIVER_REQUIRED": 0.25}]
    assert again.get("singles", 8) is None and again.get("pairs", 0) is None


def test_a_torn_last_line_is_dropped_and_the_journal_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "r.journal.jsonl"
    Journal(path, KEY).add("singles", 0, ["a"])
    with path.open("a") as f:
        f.write('{"part": "singles", "start": 8, "outp')  # killed mid-write
    j = Journal(path, KEY)
    assert j.get("singles", 0) == ["a"] and j.get("singles", 8) is None
    j.add("singles", 8, ["b"])
    assert Journal(path, KEY).get("singles", 8) == ["b"]
    assert len(path.read_text().splitlines()) == 3


def test_another_runs_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.journal.jsonl"
    Journal(path, KEY).add("singles", 0, ["a"])
    with pytest.raises(InputError) as e:
        Journal(path, {**KEY, "max_new_tokens": 400, "limit": 10})
    assert "max_new_tokens" in str(e.value) and "limit" not in str(e.value) and "--fresh" in str(e.value)
    assert Journal(path, KEY).get("singles", 0) == ["a"]  # refused, not changed


@pytest.mark.parametrize(
    "text, line",
    [
        ('{"id": "x"}\n', 1),  # not a journal
        (
            '{"__journal__": true, "key": {"model_fingerprint": "m1", "limit": 10, "max_new_tokens": 900}}\n[1]\n',
            2,
        ),
    ],
)
def test_a_file_that_is_no_journal_is_refused(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "r.journal.jsonl"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        Journal(path, KEY)
    assert e.value.line == line and path.read_text() == text
