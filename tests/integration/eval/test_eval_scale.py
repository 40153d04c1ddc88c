"""Evaluation at scale: workers, shards and merge give the bytes of a plain run; a killed or crashed run
resumes and scores every item exactly once; errored items never let a gate pass."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kimi_student.errors import KimiStudentError
from kimi_student.eval import workers as eval_workers
from kimi_student.eval.gates import DEFAULT_GATES, evaluate_gates, load_gates
from kimi_student.eval.harness import run_eval
from kimi_student.eval.report import EvalPaths
from kimi_student.eval.rows import sealed_header
from kimi_student.eval.runners.base import RunnerSpec
from kimi_student.eval.runners.gold import BATCH
from kimi_student.eval.score.item import ItemScore, score_item, summarize
from kimi_student.jsonl import dumps_line
from kimi_student.tokenizer import load_tokenizer
from kimi_student.tools.broker import ToolBroker
from tests.support import (
    KS,
    ROOT,
    crash_scoring_after,
    dead_pid,
    kill_when,
    ks,
    ks_here,
    read_rows,
    temp_litter,
    write_rows,
)

EPOCH = {"SOURCE_DATE_EPOCH": "1790000000"}


def _eval(ds: Path, folder: Path, *extra: str | Path, name: str = "r") -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True, exist_ok=True)
    return ks(
        "eval",
        "--in",
        ds,
        "--out",
        folder / f"{name}.jsonl",
        "--report",
        folder / f"{name}.json",
        *extra,
        env=EPOCH,
    )


def _same_files(a: Path, b: Path, name: str = "r") -> None:
    for ext in (".jsonl", ".json"):
        assert (a / (name + ext)).read_bytes() == (b / (name + ext)).read_bytes(), name + ext


def _other_dataset(ds: Path, out: Path) -> Path:
    """The same dataset less its last item: another dataset_sha256 (fixtures found by absolute path)."""
    rows = read_rows(ds)
    rows[0]["fixtures_dir"] = str((ds.parent / rows[0]["fixtures_dir"]).resolve())
    return write_rows(out, rows[:-1])


@pytest.fixture(scope="module")
def preds(dataset: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Predictions with every kind of row: gold, a wrong argument (miss), an unparsable call, none (error)."""
    rows = []
    for k, it in enumerate(read_rows(dataset["final"])[1:]):
        text = it["teacher_text"]
        if k % 5 == 1:
            text = text.replace('"arguments": {', '"arguments": {"zz": 1, ', 1)
        elif k % 5 == 2:
            text = text.replace('"arguments": {', '"arguments": {{', 1)
        elif k % 40 == 3:
            continue
        rows.append({"id": it["id"], "output": text})
    return write_rows(tmp_path_factory.mktemp("preds") / "pred.jsonl", rows)


@pytest.fixture(scope="module")
def reference(dataset: dict[str, Path], preds: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain run: one process, no shard."""
    d = tmp_path_factory.mktemp("ref")
    r = _eval(dataset["final"], d, "--runner", "predictions", "--predictions", preds)
    assert r.returncode == 1, r.stderr  # errored items: gates cannot pass
    return d


def test_two_workers_write_the_bytes_of_one(
    dataset: dict[str, Path], preds: Path, reference: Path, tmp_path: Path
):
    r = _eval(dataset["final"], tmp_path, "--runner", "predictions", "--predictions", preds, "--workers", "2")
    assert r.returncode == 1, r.stderr
    _same_files(tmp_path, reference)
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["results_path"] == "r.jsonl"  # relative to the report: the same bytes in any folder
    s = rep["summary"]
    assert s["error_items"] > 0 and s["fixture_miss_count"] > 0
    assert any(m["tool"] == "<unparsed>" for m in s["fixture_misses"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.jsonl"]  # parts folder removed


def test_spawned_workers_write_the_bytes_of_one(
    dataset: dict[str, Path], preds: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI forks its workers on Linux (the test above); spawned ones, what macOS and a command that has
    loaded torch get, load their own tokenizer and fixtures and write the same bytes."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH["SOURCE_DATE_EPOCH"])
    monkeypatch.setattr(eval_workers, "start_method", lambda: "spawn")
    spec = RunnerSpec("predictions", str(preds))
    rep = run_eval(dataset["final"], spec, EvalPaths(tmp_path / "r.jsonl", tmp_path / "r.json"), workers=2)
    assert rep["summary"]["items"] == len(read_rows(dataset["final"])) - 1
    _same_files(tmp_path, reference)


@pytest.fixture(scope="module")
def shards(dataset: dict[str, Path], preds: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("shards")
    for i, workers in ((0, "2"), (1, "1")):
        r = _eval(
            dataset["final"], d, "--runner", "predictions", "--predictions", preds, "--shard", f"{i}/2",
            "--workers", workers, name=f"s{i}",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"shard {i}/2" in r.stdout
    return d


def test_merged_shards_are_the_unsharded_run(shards: Path, reference: Path, tmp_path: Path) -> None:
    s0 = json.loads((shards / "s0.json").read_text())
    assert s0["gates"] == {} and s0["passed"] is None and s0["header"]["shard"] == [0, 2] and s0["partial"]
    n = [len(read_rows(shards / f"s{i}.jsonl")) - 1 for i in (0, 1)]
    assert min(n) > 80 and sum(n) == 240  # sha256(id) splits the items
    r = ks("eval", "merge", shards / "s1.jsonl", shards / "s0.jsonl", "--out", tmp_path / "r.jsonl",
           "--report", tmp_path / "r.json", env=EPOCH)  # fmt: skip
    assert r.returncode == 1, r.stderr  # as the plain run: its errored items fail the run
    _same_files(tmp_path, reference)


def test_merge_refuses_an_incomplete_or_mixed_set(
    dataset: dict[str, Path], shards: Path, reference: Path, tmp_path: Path
) -> None:
    s0, s1 = shards / "s0.jsonl", shards / "s1.jsonl"
    other = _other_dataset(dataset["final"], tmp_path / "other.jsonl")
    r = _eval(other, tmp_path, "--runner", "verification_only", "--shard", "1/2", name="x1")
    assert r.returncode == 0, r.stderr
    x1 = tmp_path / "x1.jsonl"
    cases = [
        ((s0,), "eval merge: missing shard(s) 1/2"),
        ((s0, s1, s0), f"{s0}:1: shard: shard 0/2 given twice (also {s0})"),
        ((s0, x1), f"{x1}:1: dataset_sha256: differs from {s0}'s: not a shard of the same run"),
        ((s0, reference / "r.jsonl"), "r.jsonl:1: shard: not a shard's results"),
    ]
    for args, expected in cases:
        r = ks_here("eval", "merge", *args, "--out", tmp_path / "m.jsonl", "--report", tmp_path / "m.json")
        assert r.returncode == 2, r.stdout
        assert expected in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "m.jsonl").exists() and not (tmp_path / "m.json").exists()


def _edited_shard(src: Path, dst: Path, edit: Any, reseal: bool = False) -> Path:
    """A copy of a shard's results with `edit(header, rows)` applied; `reseal`: its header sealed again
    with the run key, as only the key's holder could (the checks behind the seal must hold too)."""
    header, *rows = read_rows(src)
    edit(header, rows)
    return write_rows(dst, [sealed_header(header, "shard") if reseal else header, *rows])


def test_merge_refuses_a_repeated_or_missing_item_and_another_model(shards: Path, tmp_path: Path) -> None:
    """README: merge refuses shards of another model or fingerprint, and a missing or repeated item: an
    edited header does not match its seal, and one sealed again with the key is still refused."""
    s0, s1 = shards / "s0.jsonl", shards / "s1.jsonl"
    first0 = read_rows(s0)[1]

    def steal(h: dict, rows: list) -> None:  # s0's first item also in s1
        h["positions"].append(read_rows(s0)[0]["positions"][0])
        rows.append(first0)

    def drop(h: dict, rows: list) -> None:
        h["positions"].pop()
        rows.pop()

    def field(name: str, value: object) -> Any:
        return lambda h, rows: h.update({name: value})

    cases = [
        (steal, f"item {first0['id']!r} is also in {s0}"),
        (drop, "eval merge: the shards hold 239 of the dataset's 240 items"),
        (
            field("model_fingerprint", "0" * 64),
            f"model_fingerprint: differs from {s0}'s: not a shard of the same run",
        ),
        (field("tokenizer_fingerprint", "x"), f"tokenizer_fingerprint: differs from {s0}'s"),
        (field("code_version", "x"), f"code_version: differs from {s0}'s"),
        (field("fingerprint_problems", ["x"]), f"fingerprint_problems: differs from {s0}'s"),
    ]
    for i, (edit, expected) in enumerate(cases):
        for reseal in (False, True):
            bad = _edited_shard(s1, tmp_path / f"bad{i}.jsonl", edit, reseal)
            cli = (
                ks if i == 0 and not reseal else ks_here
            )  # in this process but once: refusals before any work
            r = cli("eval", "merge", s0, bad, "--out", tmp_path / "m.jsonl", "--report", tmp_path / "m.json")
            assert r.returncode == 2, r.stdout
            if not reseal:
                expected_ = f"{bad}:1: seal: the header does not match its seal (edited or forged)"
            assert (expected if reseal else expected_) in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert not (tmp_path / "m.jsonl").exists() and not (tmp_path / "m.json").exists()


# ---- resume -------------------------------------------------------------------------------------------------


def _part_rows(folder: Path) -> int:
    return (
        sum(max(p.read_bytes().count(b"\n") - 1, 0) for p in folder.glob("*.jsonl")) if folder.is_dir() else 0
    )


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 items: enough for a two-worker run to be killed in the middle."""
    d = tmp_path_factory.mktemp("big")
    for args in (
        ("contextual", "gen", "--n", 2000, "--seed", 9, "--out", d / "c.jsonl"),
        ("contextual", "extract", "--in", d / "c.jsonl", "--out", d / "final.jsonl"),
    ):
        r = ks(*args)
        assert r.returncode == 0, r.stderr
    return d / "final.jsonl"


# A second proof, in `make test-slow`: test_kill_anywhere.py::test_eval_killed_anywhere (a SIGKILL at a random
# moment, then every item once) and test_crash_resume_truncated_line_and_fresh prove it in make test.
@pytest.mark.extra
@pytest.mark.slow
def test_sigkill_then_the_same_command_scores_every_item_once(
    big: Path, dataset: dict[str, Path], tmp_path: Path
) -> None:
    ref = _eval(big, tmp_path / "ref", "--runner", "verification_only")
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "run"
    run.mkdir()
    args = [
        "eval",
        "--runner",
        "verification_only",
        "--in",
        big,
        "--out",
        run / "r.jsonl",
        "--report",
        run / "r.json",
    ]
    cmd = [*KS, *map(str, args), "--workers", "2"]
    parts = run / "r.jsonl.parts"
    kill_when(cmd[len(KS) :], lambda: _part_rows(parts) >= 2 * BATCH, env=EPOCH, timeout=120)
    assert not (run / "r.jsonl").exists() and not (run / "r.json").exists()
    done = _part_rows(parts)
    assert 2 * BATCH <= done < 2000
    time.sleep(0.5)  # the workers died with their parent: nothing is written any more
    assert _part_rows(parts) == done

    # Another dataset into the same --out is refused, and the scored items are kept.
    r = _eval(dataset["final"], run, "--runner", "verification_only")
    assert r.returncode == 2 and "other inputs (dataset_sha256" in r.stderr and "--fresh" in r.stderr, (
        r.stderr
    )
    assert _part_rows(parts) == done
    (run / f".r.jsonl.{dead_pid()}.0badf00d.tmp").write_text("half")  # a kill while the results were written

    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **EPOCH})
    assert r.returncode == 0, r.stderr
    assert f"resuming: {done} of 2000 items already scored" in r.stderr  # a cut-off last line is not counted
    rows = read_rows(run / "r.jsonl")
    assert [x["id"] for x in rows] == [x["id"] for x in read_rows(big)[1:]]  # each item once, in order
    _same_files(run, tmp_path / "ref")
    assert not parts.exists() and temp_litter(run) == []


def _verify(ds: Path, out: Path, rep: Path, **kw: Any) -> dict[str, Any]:
    return run_eval(ds, RunnerSpec("verification_only"), EvalPaths(out, rep), **kw)


def test_crash_resume_truncated_line_and_fresh(
    dataset: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH["SOURCE_DATE_EPOCH"])
    ds, out, rep = dataset["final"], tmp_path / "r.jsonl", tmp_path / "r.json"
    _verify(ds, tmp_path / "ref" / "r.jsonl", tmp_path / "ref" / "r.json")
    parts = tmp_path / "r.jsonl.parts"

    crash_scoring_after(monkeypatch, 150)
    with pytest.raises(RuntimeError, match="runner crashed"):
        _verify(ds, out, rep)
    assert _part_rows(parts) == 2 * BATCH and not out.exists()  # two whole batches were flushed
    (part,) = parts.glob("*.jsonl")
    part.write_bytes(part.read_bytes()[:-25])  # as if killed while writing the last row

    with pytest.raises(KimiStudentError, match=r"other inputs \(dataset_sha256.*--fresh"):
        _verify(_other_dataset(ds, tmp_path / "other.jsonl"), out, rep)
    monkeypatch.undo()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH["SOURCE_DATE_EPOCH"])
    log: list[str] = []
    _verify(ds, out, rep, log=log.append)
    assert log == [f"resuming: {2 * BATCH - 1} of 240 items already scored in {parts}"]
    _same_files(tmp_path, tmp_path / "ref")
    assert not parts.exists()

    crash_scoring_after(monkeypatch, 100)
    with pytest.raises(RuntimeError):
        _verify(ds, out, rep)
    monkeypatch.undo()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH["SOURCE_DATE_EPOCH"])
    log.clear()
    _verify(ds, out, rep, fresh=True, log=log.append)
    assert log == []  # --fresh: the crashed run's rows were discarded, every item scored again
    _same_files(tmp_path, tmp_path / "ref")


# ---- errors ------------------------------------------------------------------------------------------------


def test_errored_items_make_passing_gates_inconclusive(dataset: dict[str, Path], tmp_path: Path) -> None:
    rows = read_rows(dataset["final"])[1:]
    pred = write_rows(
        tmp_path / "p.jsonl", [{"id": it["id"], "output": it["teacher_text"]} for it in rows[3:]]
    )
    r = _eval(dataset["final"], tmp_path, "--runner", "predictions", "--predictions", pred)
    assert r.returncode == 1, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["summary"]["error_items"] == 3 and rep["passed"] is False
    errored = [x["id"] for x in read_rows(tmp_path / "r.jsonl") if x["error"]]
    assert errored == [it["id"] for it in rows[:3]]
    for name, g in rep["gates"].items():
        if name == "fingerprints_complete":
            assert g["status"] == "pass" and "error_items" not in g
        else:  # gold text everywhere else: each of these would pass without the errors
            assert g["status"] == "inconclusive" and g["error_items"] == 3, name
    assert "inconclusive (3 items errored)" in r.stdout


def test_errors_never_turn_a_failed_gate_into_anything_else() -> None:
    gates = load_gates(DEFAULT_GATES)
    summary = {
        "error_items": 2,
        "integration_f1_lax": 0.5,  # fail
        "integration_f1_strict": 0.8,  # pass
        "fixture_hit_rate": 0.96,  # warn
        "privacy_ok_rate": None,  # inconclusive already
    }
    counts = dict.fromkeys(["integration_f1_lax", "integration_f1_strict", "fixture_hit_rate"], 100)
    g = evaluate_gates(summary, counts, gates)
    assert g["integration_f1_lax"]["status"] == "fail" and "error_items" not in g["integration_f1_lax"]
    assert g["integration_f1_strict"]["status"] == g["fixture_hit_rate"]["status"] == "inconclusive"
    assert g["fixture_hit_rate"]["error_items"] == 2
    assert g["privacy_ok_rate"]["status"] == "inconclusive"
    assert (
        evaluate_gates({**summary, "error_items": 0}, counts, gates)["fixture_hit_rate"]["status"] == "warn"
    )


def test_bad_predictions_are_reported_from_a_worker_process(dataset: dict[str, Path], tmp_path: Path) -> None:
    pred = write_rows(tmp_path / "p.jsonl", [{"id": "no-such-item", "output": "hi"}])
    r = _eval(dataset["final"], tmp_path, "--runner", "predictions", "--predictions", pred, "--workers", "2")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"error: {pred}: id: 1 ids not in the dataset, e.g. 'no-such-item'"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]  # no results, report or parts


def test_a_score_read_back_from_its_row_summarizes_the_same(dataset: dict[str, Path]) -> None:
    tok = load_tokenizer("smollm2")
    broker = ToolBroker.from_folders([dataset["final"].parent / "c.jsonl.fixtures"])
    items = read_rows(dataset["final"])[1:60]
    outs = [
        it["teacher_text"].replace('"arguments": {', '"arguments": {{', i % 2) for i, it in enumerate(items)
    ]
    scores = [score_item(it, o, tok.encode_offsets([o])[0], tok, broker) for it, o in zip(items, outs)]
    back = [ItemScore.from_json(json.loads(dumps_line({**s.to_json(), "output": "x"}))) for s in scores]
    assert back == scores
    s = summarize(back)
    assert s == summarize(scores)
    assert s["fixture_hit_rate"] == broker.stats.hit_rate and s["tool_calls"] == broker.stats.calls
    assert {(m["tool"], m["key"]): m["count"] for m in s["fixture_misses"]} == dict(broker.stats.misses)
