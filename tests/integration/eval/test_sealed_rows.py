"""Sealed rows (issue 12, review D13/D14): `eval merge` and resume use only rows this user's runs scored,
each at its own run and position. Forged, edited, moved or foreign rows and malformed shard or part files
end in one line and exit 2, naming the file, the line and the field, before anything is written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kimi_student.eval.harness import run_eval
from kimi_student.eval.identity import RunIdentity
from kimi_student.eval.report import EvalPaths
from kimi_student.eval.rows import RowSeal, sealed_header
from kimi_student.eval.runners.base import RunnerSpec
from kimi_student.eval.runners.gold import BATCH
from kimi_student.integrity import ENV
from tests.support import crash_scoring_after, ks_here, read_rows, write_rows

EPOCH = {"SOURCE_DATE_EPOCH": "1790000000"}
KEY_A = {ENV: "a1" * 32}  # "another machine": shards sealed with a key of their own
KEY_B = "b2" * 32


def _eval(ds: Path, out: Path, *extra: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`eval` in this process (the seal's refusals through a process of its own: test_eval_scale's merges)."""
    return ks_here("eval", "--in", ds, "--out", out.with_suffix(".jsonl"), "--report", out.with_suffix(".json"),
              *extra, env={**EPOCH, **(env or {})})  # fmt: skip


def _merge(*shards: Path, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`eval merge` in this process."""
    return ks_here("eval", "merge", *shards, "--out", out.with_suffix(".jsonl"), "--report", out.with_suffix(".json"),
              env={**EPOCH, **(env or {})})  # fmt: skip


def _refused(r: subprocess.CompletedProcess, expected: str, *unwritten: Path) -> None:
    """Exit 2, one line holding `expected`, none of `unwritten` there."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and expected in r.stderr, r.stderr
    assert not [p for p in unwritten if p.exists()]


@pytest.fixture(scope="module")
def failing(dataset: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two shards of a run that fails: every output is "424242"."""
    d = tmp_path_factory.mktemp("failing")
    items = read_rows(dataset["final"])[1:]
    preds = write_rows(d / "p.jsonl", [{"id": it["id"], "output": "424242"} for it in items])
    for i in (0, 1):
        r = _eval(dataset["final"], d / f"s{i}", "--runner", "predictions", "--predictions", preds,
                  "--shard", f"{i}/2")  # fmt: skip
        assert r.returncode == 0, r.stderr
    r = _merge(d / "s0.jsonl", d / "s1.jsonl", out=d / "m")
    assert r.returncode == 1 and "FAIL" in r.stdout, r.stderr
    return d


def _copy(src: Path, dst: Path, edit: Any) -> Path:
    header, *rows = read_rows(src)
    edit(header, rows)
    return write_rows(dst, [header, *rows])


def _perfect(row: dict[str, Any]) -> None:
    """What the tester of D14 did: every count of an eligible row set to perfect."""
    n = row["gold_evidence"]
    row.update(
        claims=n, claims_lax=n, claims_strict=n, found_lax=n, found_strict=n, f1_lax=1.0, f1_strict=1.0
    )


def test_forged_counts_and_a_forged_header_are_refused(failing: Path, tmp_path: Path) -> None:
    s0, s1 = failing / "s0.jsonl", failing / "s1.jsonl"
    rows = read_rows(s1)[1:]
    first = next(k for k, r in enumerate(rows) if r["eligible"])
    assert rows[first]["output"] == "424242" and rows[first]["f1_lax"] == 0.0

    def counts(h: dict, rows: list) -> None:
        for r in rows:
            if r["eligible"]:
                _perfect(r)

    bad = _copy(s1, tmp_path / "counts.jsonl", counts)
    _refused(
        _merge(s0, bad, out=tmp_path / "m"),
        f"{bad}:{first + 2}: seal: item {rows[first]['id']!r}: the row does not match its seal",
        tmp_path / "m.jsonl",
        tmp_path / "m.json",
    )

    def header(h: dict, rows: list) -> None:
        counts(h, rows)
        h["model_fingerprint"] = "predictions:forged"

    bad = _copy(s1, tmp_path / "header.jsonl", header)
    _refused(_merge(s0, bad, out=tmp_path / "m"), f"{bad}:1: seal: the header does not match its seal")


def test_rows_sealed_with_another_key_are_refused(
    failing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forger without the run key seals with a key of their own: the file says so, or no row checks."""
    s0, s1 = failing / "s0.jsonl", failing / "s1.jsonl"
    header, *rows = read_rows(s1)
    monkeypatch.setenv(ENV, KEY_B)  # the forger's key, in this process only
    identity = RunIdentity.from_shard_header(header, s1)  # public: anyone can compute what a row is
    rowseal = RowSeal(identity.row_identity())
    forged = []
    for pos, r in zip(header["positions"], rows):
        _perfect(r)
        forged.append(rowseal.sealed(r, pos))
    own_header = write_rows(tmp_path / "own.jsonl", [sealed_header(header, "shard"), *forged])
    monkeypatch.delenv(ENV)
    _refused(
        _merge(s0, own_header, out=tmp_path / "m"), f"{own_header}:1: sealed_by: sealed with another run key"
    )
    kept_header = write_rows(tmp_path / "kept.jsonl", [header, *forged])  # the genuine header kept
    _refused(_merge(s0, kept_header, out=tmp_path / "m"), f"{kept_header}:2: seal: item {rows[0]['id']!r}")


def test_rows_moved_to_another_position_or_run_are_refused(
    dataset: dict[str, Path], failing: Path, tmp_path: Path
) -> None:
    s0, s1 = failing / "s0.jsonl", failing / "s1.jsonl"
    rows = read_rows(s1)[1:]

    def swap(h: dict, rows: list) -> None:  # two rows trade places: the header untouched
        rows[0], rows[1] = rows[1], rows[0]

    bad = _copy(s1, tmp_path / "swap.jsonl", swap)
    _refused(_merge(s0, bad, out=tmp_path / "m"), f"{bad}:2: seal: item {rows[1]['id']!r}")

    gold = tmp_path / "gold1"  # the same items scored by another run (the gold text: it passes)
    assert _eval(dataset["final"], gold, "--runner", "verification_only", "--shard", "1/2").returncode == 0
    gold_rows = read_rows(gold.with_suffix(".jsonl"))[1:]
    assert [r["id"] for r in gold_rows] == [r["id"] for r in rows]

    def from_gold(h: dict, rows: list) -> None:
        rows[5] = gold_rows[5]

    bad = _copy(s1, tmp_path / "moved.jsonl", from_gold)
    _refused(_merge(s0, bad, out=tmp_path / "m"), f"{bad}:7: seal: item {rows[5]['id']!r}")


def test_shards_of_one_key_merge_to_the_plain_run_and_another_key_is_named(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    """Shards scored with KIMI_STUDENT_RUN_KEY set merge under that key as before (PASS, the bytes of the
    plain run); under another key they are refused, saying why. The seals differ with the key, the report
    does not."""
    ds, a, own = dataset["final"], tmp_path / "a", tmp_path / "own"
    a.mkdir()
    own.mkdir()
    for i in (0, 1):
        assert (
            _eval(ds, a / f"s{i}", "--runner", "verification_only", "--shard", f"{i}/2", env=KEY_A).returncode
            == 0
        )
    assert _eval(ds, a / "r", "--runner", "verification_only", env=KEY_A).returncode == 0
    assert _eval(ds, own / "r", "--runner", "verification_only").returncode == 0

    r = _merge(a / "s0.jsonl", a / "s1.jsonl", out=a / "merged" / "r", env=KEY_A)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1].startswith("PASS"), r.stderr
    for ext in (".jsonl", ".json"):
        assert (a / "merged" / f"r{ext}").read_bytes() == (a / f"r{ext}").read_bytes(), ext
    assert (own / "r.json").read_bytes() == (a / "r.json").read_bytes()  # no seal in the report
    theirs, mine = read_rows(a / "r.jsonl"), read_rows(own / "r.jsonl")
    assert [r["seal"] for r in theirs] != [r["seal"] for r in mine]
    assert [{**r, "seal": 0} for r in theirs] == [{**r, "seal": 0} for r in mine]

    _refused(
        _merge(a / "s0.jsonl", a / "s1.jsonl", out=own / "m"),
        f"{a / 's0.jsonl'}:1: sealed_by: sealed with another run key (another machine or user): every "
        f"machine of a run needs the same {ENV}",
        own / "m.jsonl",
        own / "m.json",
    )


# ---- malformed shards (D13) --------------------------------------------------------------------------------


def _set(name: str, value: object) -> Any:
    return lambda h, rows: h.update({name: value})


def _row_edit(edit: Any) -> Any:
    return lambda h, rows: edit(rows)


def test_malformed_shards_name_file_line_and_field(
    failing: Path, dataset: dict[str, Path], tmp_path: Path
) -> None:
    gold = tmp_path / "g0"  # a shard with calls in its rows
    assert _eval(dataset["final"], gold, "--runner", "verification_only", "--shard", "0/2").returncode == 0
    g0 = gold.with_suffix(".jsonl")
    s0 = failing / "s0.jsonl"
    with_call = next(k for k, r in enumerate(read_rows(g0)[1:]) if r["calls"])
    cases = [
        (s0, _set("shard", 5), ":1: shard: 5 is not [i, n]"),
        (s0, _set("shard", [0, 0]), ":1: shard: [0, 0] needs 0 <= i < n"),
        (s0, _set("shard", [1, 0]), ":1: shard: [1, 0] needs 0 <= i < n"),
        (s0, lambda h, rows: h.pop("positions"), ":1: positions: missing or not a list"),
        (s0, _set("items_total", "240"), ":1: items_total: '240' is not a number of items"),
        (s0, lambda h, rows: h["positions"].__setitem__(0, "a"), ":1: positions: 'a' is not a position"),
        (
            s0,
            lambda h, rows: h["positions"].__setitem__(1, h["positions"][0]),
            ":1: positions: a position is given twice",
        ),  # fmt: skip
        (s0, _row_edit(lambda rows: rows[0].update(claims="3")), ":2: claims: '3' is not of type int"),
        (
            g0,
            _row_edit(lambda rows: rows[with_call]["calls"][0].pop("hit")),
            f":{with_call + 2}: calls[0].hit: missing or mistyped in a call record",
        ),  # fmt: skip
    ]
    for k, (src, edit, expected) in enumerate(cases):
        bad = _copy(src, tmp_path / f"bad{k}.jsonl", edit)
        other = failing / "s1.jsonl" if src == s0 else failing / "s0.jsonl"
        _refused(
            _merge(other, bad, out=tmp_path / "m"),
            f"{bad}{expected}",
            tmp_path / "m.jsonl",
            tmp_path / "m.json",
        )


# ---- parts (resume) ----------------------------------------------------------------------------------------


def _killed_run(ds: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run stopped after two batches: its part file (2 * BATCH rows)."""
    with monkeypatch.context() as m:
        crash_scoring_after(m, 150)
        with pytest.raises(RuntimeError):
            run_eval(
                ds,
                RunnerSpec("verification_only"),
                EvalPaths(out.with_suffix(".jsonl"), out.with_suffix(".json")),
            )
    (part,) = out.parent.joinpath(out.name + ".jsonl.parts").glob("*.jsonl")
    assert len(read_rows(part)) == 1 + 2 * BATCH
    return part


def test_forged_or_foreign_part_rows_are_refused_on_resume(
    dataset: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, out = dataset["final"], tmp_path / "r"
    resume = ("--runner", "verification_only")
    part = _killed_run(ds, out, monkeypatch)
    header, *rows = read_rows(part)

    forged = [header, *rows]
    forged[3] = {**rows[2], "found_lax": rows[2]["found_lax"] + 1}
    write_rows(part, forged)
    expected = f"{part}:4: seal: item {rows[2]['id']!r}: the row does not match its seal"
    _refused(_eval(ds, out, *resume), expected, out.with_suffix(".jsonl"), out.with_suffix(".json"))
    assert part.exists()  # kept for a look: --fresh discards it

    assert _eval(ds, tmp_path / "done", *resume).returncode == 0
    results = read_rows(tmp_path / "done.jsonl")  # a finished run's rows
    write_rows(part, [header, results[0], *rows[1:]])  # sealed as a results row, not as a part row
    _refused(_eval(ds, out, *resume), f"{part}:2: seal: item {rows[0]['id']!r}")

    write_rows(part, [[header], *rows])
    _refused(_eval(ds, out, *resume), f"{part}:1: __part__: not a part file header")

    monkeypatch.setenv(ENV, KEY_B)  # parts sealed with another key
    write_rows(part, [sealed_header(header, "part"), *rows])
    monkeypatch.delenv(ENV)
    _refused(_eval(ds, out, *resume), f"{part}:1: sealed_by: sealed with another run key")

    write_rows(part, [header, *rows])  # as the killed run left it
    r = _eval(ds, out, *resume)
    assert r.returncode == 0 and f"resuming: {2 * BATCH} of 240" in r.stderr, r.stderr
    assert json.loads(out.with_suffix(".json").read_text())["passed"] is True
