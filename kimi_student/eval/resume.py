"""Part files: where a run's workers append their scored rows, a batch at a time, so that a killed or
crashed run resumes where it stopped.

A part file is JSONL under `<out>.parts/`: line 1 `{"__part__": true, "identity": <resume key>, "worker":
w, <runner facts>, "sealed_by": .., "seal": ..}`, then one result row per item, each sealed as a part row of
that resume key and model (eval/rows.py): a row edited, forged or carried over from another run or key is
refused, never used. The resume key is everything a row depends on (`RunInputs.resume_key`); a restart
with another key is refused. A last line without its newline (the writer was killed mid-write) is dropped.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_student.errors import InputError, KimiStudentError
from kimi_student.eval.identity import RunnerFacts
from kimi_student.eval.rows import RowSeal, check_header, sealed_header
from kimi_student.eval.runners.base import transient
from kimi_student.fingerprint import sha256_json
from kimi_student.jsonl import dumps_line, gc_paused

LOCK_WAIT_S = 10.0


def parts_dir(results: Path) -> Path:
    return results.with_name(results.name + ".parts")


_REDO = "rerun with --fresh"


def part_header(key: dict[str, Any], worker: int, facts: RunnerFacts) -> str:
    """The first line of a part file (sealed)."""
    header = {"__part__": True, "identity": key, "worker": worker, **facts.to_json()}
    return dumps_line(sealed_header(header, "part"))


def _row_identity(key: dict[str, Any], facts: RunnerFacts) -> str:
    return f"kimi-student eval part row {sha256_json({'key': key, **facts.to_json()})}"


def part_row_seal(key: dict[str, Any], facts: RunnerFacts) -> RowSeal:
    """What seals the rows of a part file of this run and model."""
    return RowSeal(_row_identity(key, facts))


@dataclass
class Parts:
    """What the part files of a run hold so far."""

    facts: RunnerFacts | None  # the runner's (all parts agree)
    rows: dict[str, dict[str, Any]]  # id -> result row (the first, should an id be found twice, unless
    # it failed only because the model could not be reached and a later one did not)

    @property
    def settled(self) -> dict[str, dict[str, Any]]:
        """The rows a resume keeps: not those of items whose model could not be reached (asked again)."""
        return {k: row for k, row in self.rows.items() if not transient(row)}


def _read_part(path: Path) -> tuple[dict[str, Any] | None, list[tuple[int, dict[str, Any]]]]:
    """The header and the (line number, row) of a part file, each line a JSON object."""
    lines = path.read_bytes().split(b"\n")[:-1]  # the last piece is b"" or a line cut short by a kill
    objs = []
    for lineno, raw in enumerate(lines, start=1):
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            why = "nested too deep" if isinstance(e, RecursionError) else str(e)[:200]
            raise InputError(path, lineno, None, f"damaged part file ({why}): {_REDO}") from None
        if not isinstance(obj, dict):
            what = "not a part file header" if lineno == 1 else "damaged part file: not a row"
            field = "__part__" if lineno == 1 else "id"
            raise InputError(path, lineno, field, f"{what} (a JSON {type(obj).__name__}): {_REDO}")
        objs.append((lineno, obj))
    if not objs:
        return None, []
    if objs[0][1].get("__part__") is not True:
        raise InputError(path, 1, "__part__", f"not a part file: {_REDO}")
    return objs[0][1], objs[1:]


def read_parts(folder: Path, key: dict[str, Any], wanted: set[str]) -> Parts:
    """Rows scored so far by earlier workers, each seal checked. Refuses parts of another run (other
    resume key), of another model, of another run key, and any row that does not match its seal."""
    with gc_paused():  # every row stays alive: collections would only walk them again and again
        return _read_parts(folder, key, wanted)


def _read_parts(folder: Path, key: dict[str, Any], wanted: set[str]) -> Parts:
    facts: RunnerFacts | None = None
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        header, part_rows = _read_part(path)
        if header is None:
            continue  # killed before its header was complete
        check_header(path, header, "part", _REDO)  # from here on, the header is as this user's run wrote it
        if header["identity"] != key:
            diff = sorted(k for k in key if header["identity"].get(k) != key[k])
            raise KimiStudentError(
                f"{folder} holds an unfinished run with other inputs ({', '.join(diff)} differ): "
                "rerun with --fresh to discard it"
            )
        head_facts = RunnerFacts.from_json(header)
        if facts is not None and head_facts != facts:
            raise KimiStudentError(f"{path}: made with another model than the other parts: {_REDO}")
        facts = head_facts
        rowseal = RowSeal(_row_identity(key, facts))
        for line, row in part_rows:
            if not isinstance(row.get("id"), str) or row["id"] not in wanted:
                raise InputError(path, line, "id", f"{row.get('id')!r} is not an item of this run: {_REDO}")
            rowseal.check(path, line, row, None, _REDO)
            if row["id"] not in rows or (transient(rows[row["id"]]) and not transient(row)):
                rows[row["id"]] = row
    return Parts(facts, rows)


def has_rows(folder: Path) -> bool:
    try:
        return any(len(_read_part(p)[1]) > 0 for p in folder.glob("*.jsonl"))
    except KimiStudentError:
        return True  # damaged: keep it for a look


def next_attempt(folder: Path) -> int:
    """Each start writes new part files (a-<attempt>-w<worker>), never appends to a killed run's."""
    return 1 + max((int(p.name.split("-")[1]) for p in folder.glob("a-*-w*.jsonl")), default=0)


@contextmanager
def locked_parts(folder: Path, fresh: bool) -> Iterator[list[Path]]:
    """Hold `<out>.parts/lock` for the run: exclusive to check that no other run (or orphaned worker) is
    writing here, then shared with this run's workers. Gives the folders above it that it made."""
    made = [p for p in folder.parents if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KimiStudentError(f"{folder}: another eval run is writing there") from None
                time.sleep(0.1)
        if fresh:
            for p in folder.glob("*.jsonl"):
                p.unlink()
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield made
    finally:
        os.close(fd)


@contextmanager
def kept_if_resumable(folder: Path, made: Sequence[Path] = ()) -> Iterator[None]:
    """On any failure, remove the parts folder unless it holds rows to resume from, and the folders `made` for
    it (deepest first) that are left empty: leave nothing behind."""
    try:
        yield
    except BaseException:
        if not has_rows(folder):
            shutil.rmtree(folder, ignore_errors=True)
            for p in made:
                try:
                    p.rmdir()
                except OSError:  # not empty (another writer's), or gone
                    break
        raise
