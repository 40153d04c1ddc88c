"""Items split by sha256(id): over shards (`--shard i/n`, one job per machine) and, within a shard, over
worker processes. A shard writes its rows after a header line saying what the run is and where its rows
go; `merge_shards` joins every shard of a run into the bytes of the unsharded run, once it has checked
every line's shape and seal (eval/rows.py): a row edited, forged or moved is refused, never merged."""

from __future__ import annotations

import hashlib
from collections.abc import Container
from pathlib import Path
from typing import Any

from kimi_student.errors import InputError, KimiStudentError
from kimi_student.eval.gates import DEFAULT_GATES, load_gates
from kimi_student.eval.identity import RunIdentity
from kimi_student.eval.report import EvalPaths, build_report, results_path, write_pair, write_run
from kimi_student.eval.rows import RowSeal, check_header, check_shape, key_id, sealed_header
from kimi_student.fingerprint import canonical_json
from kimi_student.jsonl import read_jsonl


def item_hash(item_id: str) -> int:
    return int(hashlib.sha256(item_id.encode("utf-8")).hexdigest(), 16)


def shard_of(h: int, shards: int) -> int:
    return h % shards


def worker_of(h: int, shards: int, workers: int) -> int:
    """Independent of the shard rule (other digits of the hash), so each shard's workers share its items
    evenly."""
    return (h // shards) % workers


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` -> (i, n), 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise KimiStudentError(f"--shard takes i/n (e.g. 0/4), not {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise KimiStudentError(f"--shard {text}: needs 0 <= i < n")
    return i, n


def shard_positions(hashes: list[int], shard: tuple[int, int] | None) -> list[int]:
    """The dataset positions of a shard's items (all of them when not sharded)."""
    return [k for k, h in enumerate(hashes) if shard is None or shard_of(h, shard[1]) == shard[0]]


def worker_shares(
    items: list[dict[str, Any]],
    hashes: list[int],
    positions: list[int],
    shard: tuple[int, int] | None,
    workers: int,
    done: Container[str],
) -> list[list[int]]:
    """The `positions` whose items are not `done` yet, dealt to `workers` by sha256(id)."""
    shares: list[list[int]] = [[] for _ in range(workers)]
    for k in positions:
        if items[k]["id"] not in done:
            shares[worker_of(hashes[k], shard[1] if shard else 1, workers)].append(k)
    return shares


def write_shard(
    identity: RunIdentity,
    shard: tuple[int, int],
    positions: list[int],
    rows: list[dict[str, Any]],
    lines: list[str],
    problems: list[str],
    out: EvalPaths,
) -> dict[str, Any]:
    """Write a shard's results (`lines`, after its sealed header line) and its report, without gates."""
    header = {**identity.header(), "shard": list(shard)}
    report = build_report(header, rows, problems, None, results_path(out))
    report["partial"] = f"shard {shard[0]}/{shard[1]}: gates are applied to the merged run"
    first = sealed_header(identity.shard_header(shard, positions, problems), "shard")
    write_pair(out, [canonical_json(first), *lines], report)
    return report


_REDO = "score that shard again (eval --shard i/n)"
Rows = list[tuple[int, dict[str, Any]]]  # (line number, row)


def _is_int(v: Any) -> bool:
    return type(v) is int


def _header_problem(h: dict[str, Any]) -> tuple[str, str] | None:
    """(field, what is wrong) in a shard's first line, else None: what merge reads besides the identity."""
    shard, total, positions = h.get("shard"), h.get("items_total"), h.get("positions")
    if not (isinstance(shard, list) and len(shard) == 2 and all(map(_is_int, shard))):
        return "shard", f"{shard!r:.40} is not [i, n]"
    if not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        return "shard", f"{shard} needs 0 <= i < n"
    if not _is_int(total) or total < 0:
        return "items_total", f"{total!r:.40} is not a number of items"
    if not isinstance(positions, list):
        return "positions", "missing or not a list"
    bad = next((p for p in positions if not _is_int(p) or not 0 <= p < total), None)
    if bad is not None:
        return "positions", f"{bad!r:.40} is not a position of the dataset's {total} items"
    if len(set(positions)) != len(positions):
        return "positions", "a position is given twice"
    problems = h.get("fingerprint_problems")
    if not (isinstance(problems, list) and all(isinstance(p, str) for p in problems)):
        return "fingerprint_problems", "missing or not a list of texts"
    return None


def _read_shard(path: Path) -> tuple[dict[str, Any], Rows]:
    """A shard's header and rows, the shape of each checked and the header's seal (the rows' seals need
    the run's identity: merge_shards checks them)."""
    header: dict[str, Any] | None = None
    rows: Rows = []
    for line, obj in read_jsonl(path):
        if header is None:
            if obj.get("__header__") is not True or "shard" not in obj:
                raise InputError(path, line, "shard", "not a shard's results (run eval with --shard i/n)")
            problem = _header_problem(obj)
            if problem is not None:
                raise InputError(path, line, *problem)
            check_header(path, obj, "shard", _REDO)
            header = obj
            continue
        if not isinstance(obj.get("id"), str):
            raise InputError(path, line, "id", "missing or not a text (not a result row)")
        check_shape(path, line, obj)
        rows.append((line, obj))
    if header is None:
        raise InputError(path, None, "shard", "empty file")
    if len(rows) != len(header["positions"]):
        raise InputError(
            path, None, "positions", f"{len(header['positions'])} positions for {len(rows)} rows"
        )
    return header, rows


def _check_same_run(shards: list[tuple[Path, dict[str, Any], Rows]]) -> RunIdentity:
    """Every shard of one run exactly once; the run's identity."""
    first_path, first, _ = shards[0]
    identity, n = RunIdentity.from_shard_header(first, first_path), first["shard"][1]
    by_index: dict[int, Path] = {}
    for path, h, _ in shards:
        if h["shard"][1] != n:
            raise InputError(
                path, 1, "shard", f"shard {h['shard'][0]}/{h['shard'][1]}, but {first_path} is of {n}"
            )
        if h["shard"][0] in by_index:
            raise InputError(
                path, 1, "shard", f"shard {h['shard'][0]}/{n} given twice (also {by_index[h['shard'][0]]})"
            )
        by_index[h["shard"][0]] = path
        differ = RunIdentity.from_shard_header(h, path).differences(identity)
        if h["fingerprint_problems"] != first["fingerprint_problems"]:
            differ.append("fingerprint_problems")
        if differ:
            raise InputError(path, 1, differ[0], f"differs from {first_path}'s: not a shard of the same run")
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        raise KimiStudentError(f"eval merge: missing shard(s) {', '.join(f'{i}/{n}' for i in missing)}")
    return identity


def merge_shards(
    shard_results: list[str | Path], out: EvalPaths, gates_path: str | Path = DEFAULT_GATES
) -> dict[str, Any]:
    """Join the results of every shard of a run (`eval --shard i/n`) into the results and report that the
    unsharded run writes (byte for byte, with the same --out/--report and SOURCE_DATE_EPOCH)."""
    gates_cfg = load_gates(gates_path)
    key_id()  # the run key is usable (the shards' seals are checked with it)
    shards = [(Path(p), *_read_shard(Path(p))) for p in shard_results]
    if not shards:
        raise KimiStudentError("eval merge needs the results file of every shard")
    identity = _check_same_run(shards)
    placed: dict[int, dict[str, Any]] = {}
    where: dict[str, Path] = {}
    rowseal = RowSeal(identity.row_identity())
    for path, h, rows in shards:
        for pos, (line, row) in zip(h["positions"], rows):
            rowseal.check(path, line, row, pos, _REDO)
            if row["id"] in where or pos in placed:
                raise InputError(
                    path, line, "id", f"item {row['id']!r} is also in {where.get(row['id'], path)}"
                )
            placed[pos], where[row["id"]] = row, path
    if sorted(placed) != list(range(identity.items_total)):
        raise KimiStudentError(
            f"eval merge: the shards hold {len(placed)} of the dataset's {identity.items_total} items"
        )
    rows = [placed[k] for k in range(identity.items_total)]
    lines = [canonical_json(r) for r in rows]
    return write_run(identity.header(), rows, lines, shards[0][1]["fingerprint_problems"], gates_cfg, out)
