"""judge eval's journal: each chunk of outputs appended as it is decoded, so that a killed eval resumes where
it stopped (an audit Judge's 600-case gate run is hours on 2 cores).

The journal is JSONL beside the report (`<report>.journal.jsonl`): line 1 `{"__journal__": true, "key": ..}`,
the key being everything an output depends on (model and set fingerprints, limit, decoding settings, code);
then `{"part": .., "start": i, "outputs": [..]}` per chunk. A journal of another key is refused (the run
says so and how to start over); a last line without its newline (the writer was killed mid-write) is
dropped; the journal is removed once the report is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kimi_student.errors import InputError
from kimi_student.jsonl import atomic_writer, dumps_line


def journal_path(report: Path) -> Path:
    return report.with_suffix(".journal.jsonl")


class Journal:
    """The chunks decoded so far (`done`, by part and start), read back from `path` when it exists."""

    def __init__(self, path: Path, key: dict[str, Any]):
        self.path, self.key = path, key
        self.done: dict[tuple[str, int], list[Any]] = {}
        if path.exists():
            self._read()
        else:
            self._append({"__journal__": True, "key": key})

    def _read(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")[:-1]  # the last piece has no newline: empty, or a write cut short
        try:
            head = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            head = None
        if not isinstance(head, dict) or not head.get("__journal__"):
            raise InputError(self.path, 1, "__journal__", "not a judge eval journal: rerun with --fresh")
        if head.get("key") != self.key:
            old = head["key"] if isinstance(head.get("key"), dict) else {}
            changed = sorted(k for k in {**old, **self.key} if old.get(k) != self.key.get(k))
            raise InputError(
                self.path,
                1,
                "key",
                f"a journal of another run (differs in {', '.join(changed)}): rerun with --fresh to start over",
            )
        for n, line in enumerate(lines[1:], 2):
            try:
                row = json.loads(line)
                self.done[(row["part"], int(row["start"]))] = list(row["outputs"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise InputError(self.path, n, "outputs", f"unreadable ({e}): rerun with --fresh") from None
        if not text.endswith("\n"):  # keep the file appendable: drop the torn line
            with atomic_writer(self.path) as f:
                f.write("".join(line + "\n" for line in lines))

    def get(self, part: str, start: int) -> list[Any] | None:
        return self.done.get((part, start))

    def add(self, part: str, start: int, outputs: list[Any]) -> None:
        self.done[(part, start)] = outputs
        self._append({"part": part, "start": start, "outputs": outputs})

    def _append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(dumps_line(row))
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
