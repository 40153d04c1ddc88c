"""Results rows as eval writes them (sealed) and reads them back (checked), so that `eval merge` and resume
use only rows this user's own runs scored, each where it was scored.

Every row eval writes (a part row during a run, a shard's rows, the final results) carries `seal`, an HMAC
of the row's canonical JSON without it and of its place, under a key derived from the user's run key
(kimi_student.integrity) and what the row is: a row of this run (RunIdentity: dataset, model, tokenizer,
registry, fixtures, code) at its dataset position, or a part row of this unfinished run (its resume key
and model; the row's id places it). The header of a part or shard file is sealed too (integrity.seal),
with `sealed_by`, an id of the key that sealed it (a seal of a fixed text: it tells keys apart and reveals
nothing of them). So an edited count, a row forged or re-sealed without the key, or a row moved to another
run or position no longer checks, and a file from another key is named as such. Not caught: anyone who
can read the run key, and a genuine row of the same run and position put back (an older copy of itself).

Seals depend on the key: the same inputs and key give the same bytes; another key gives other seals and
the same report (no seal is in it). Shards scored on several machines merge only when every machine seals
with the same key: set the same KIMI_STUDENT_RUN_KEY on each.

Not done: scoring a row's stored output again. It costs as much as the run's own scoring (about 1.5 ms an
item against a few microseconds a seal check), needs the dataset, tokenizer and fixtures at merge, and
proves nothing the seal does not: whoever can seal a row can as well rewrite its output.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from kimi_student.errors import InputError
from kimi_student.eval.score.item import ItemScore
from kimi_student.fingerprint import canonical_json
from kimi_student.integrity import ENV, check_seal, seal

SEAL, SEALED_BY = "seal", "sealed_by"
_KEY_ID = "kimi-student run key id"


def key_id() -> str:
    """Which key seals here (made on first use, so a bad key fails a run at its start)."""
    return seal(_KEY_ID, b"")[:16]


def _payload(obj: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in obj.items() if k != SEAL}).encode("utf-8")


def _members(obj: dict[str, Any]) -> str:
    """The canonical JSON of an object's members, without its braces."""
    return canonical_json(obj)[1:-1]


def _object(*members: str) -> str:
    """An object of members spelt by `_members`, in the order given (empty ones skipped): the canonical
    JSON of the whole when they are in key order, as canonical_json joins them the same way."""
    return "{" + ",".join(m for m in members if m) + "}"


def _sealed(obj: dict[str, Any], identity: str) -> dict[str, Any]:
    """`obj` with its seal as `identity` (any seal it had replaced)."""
    return {**{k: v for k, v in obj.items() if k != SEAL}, SEAL: seal(identity, _payload(obj))}


def sealed_header(header: dict[str, Any], what: str) -> dict[str, Any]:
    """A part's or shard's first line, with the id of the key and its seal."""
    return _sealed({**header, SEALED_BY: key_id()}, f"kimi-student eval {what} header")


def check_header(path: Path, header: dict[str, Any], what: str, redo: str) -> None:
    """Refuse a header this user's key did not seal as a `what` header (exit 2, one line)."""
    if not isinstance(header.get(SEAL), str) or SEALED_BY not in header:
        raise InputError(
            path, 1, SEAL, f"not sealed (written before eval sealed its files, or forged): {redo}"
        )
    if header[SEALED_BY] != key_id():
        raise InputError(
            path,
            1,
            SEALED_BY,
            f"sealed with another run key (another machine or user): every machine of a run needs the "
            f"same {ENV}",
        )
    if not check_seal(f"kimi-student eval {what} header", _payload(header), header[SEAL]):
        raise InputError(path, 1, SEAL, f"the header does not match its seal (edited or forged): {redo}")


class RowSeal:
    """Seals the rows of one identity (a run, or an unfinished run's parts). One seal() of the identity gives
    this object its own key (HMAC as a key derivation: without the run key it cannot be made); each row's
    seal is then an HMAC of its place and canonical JSON under that key: a few microseconds a row, where a
    seal() each (the run key file read again every time) cost about 40."""

    def __init__(self, identity: str):
        self._key = bytes.fromhex(seal(identity, b"kimi-student eval rows"))

    def _mac(self, row: dict[str, Any], place: int | None, payload: bytes | None = None) -> str:
        message = f"{'' if place is None else place}\n".encode() + (
            _payload(row) if payload is None else payload
        )
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sealed(self, row: dict[str, Any], place: int | None = None) -> dict[str, Any]:
        """`row` with its seal at `place` (a dataset position; None: the row's id places it)."""
        return {**{k: v for k, v in row.items() if k != SEAL}, SEAL: self._mac(row, place)}

    def lines(self, row: dict[str, Any], other: RowSeal, place: int) -> tuple[str, str]:
        """The lines of `row` sealed by this sealer (no place: a part row) and by `other` at `place` (the
        results row), each as `canonical_json(sealed(...))` spells it, from one canonical JSON of the row:
        its members before and after where the seal goes (keys in order) are spelt once, and the
        payload and both lines are joined from them."""
        head, tail = (
            _members({k: v for k, v in row.items() if k < SEAL}),
            _members({k: v for k, v in row.items() if k > SEAL}),
        )
        payload = _object(head, tail).encode("utf-8")
        mine, theirs = self._mac(row, None, payload), other._mac(row, place, payload)
        return _object(head, f'"{SEAL}":"{mine}"', tail), _object(head, f'"{SEAL}":"{theirs}"', tail)

    def check(self, path: Path, line: int, row: dict[str, Any], place: int | None, redo: str) -> None:
        """Refuse a row that is not this sealer's at `place` (exit 2, one line)."""
        mac = row.get(SEAL)
        if not isinstance(mac, str) or not hmac.compare_digest(self._mac(row, place), mac):
            raise InputError(
                path,
                line,
                SEAL,
                f"item {row.get('id')!r}: the row does not match its seal (its counts or output edited, "
                f"forged, or moved from another run or position): {redo}",
            )


# ---- shape ---------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return type(v) is int


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(map(check, v))


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": _is_int,
    "bool": lambda v: isinstance(v, bool),
    "bool | None": lambda v: v is None or isinstance(v, bool),
    "str | None": lambda v: v is None or isinstance(v, str),
    "list[str]": _list_of(lambda v: isinstance(v, str)),
    "dict[str, int]": lambda v: isinstance(v, dict) and all(map(_is_int, v.values())),
    "list[dict[str, Any]]": _list_of(lambda v: isinstance(v, dict)),  # calls: each checked below
}
# What each call record holds: name, valid, hit, and the fixture key (or, unparsed, the parse error).
_CALL = {"name": _CHECKS["str | None"], "valid": _CHECKS["bool"], "hit": _CHECKS["bool"]}


def row_problem(row: dict[str, Any]) -> tuple[str, str] | None:
    """(field, what is wrong) for a row that is not a results row as ItemScore writes it, else None."""
    for f in fields(ItemScore):
        if f.name not in row:
            return f.name, "missing field (not a result row)"
        if not _CHECKS[str(f.type)](row[f.name]):
            return f.name, f"{row[f.name]!r:.60} is not of type {f.type}"
    for i, call in enumerate(row["calls"]):
        for name, ok in _CALL.items():
            if name not in call or not ok(call[name]):
                return f"calls[{i}].{name}", "missing or mistyped in a call record"
        extra = "key" if "key" in call else "error"
        if not isinstance(call.get(extra), str):
            return f"calls[{i}].key", "a call record needs its fixture key (or its parse error)"
    return None


def check_shape(path: Path, line: int, row: dict[str, Any]) -> None:
    problem = row_problem(row)
    if problem is not None:
        raise InputError(path, line, *problem)
