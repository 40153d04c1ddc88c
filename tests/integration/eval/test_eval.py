from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from kimi_student.chat.prompt import prompt_wrapper_sha256
from kimi_student.chat.transcript import INTEGRATION
from kimi_student.errors import InputError
from kimi_student.eval.identity import RunIdentity, RunInputs, RunnerFacts
from tests.support import ks, ks_here, read_rows, write_rows

EPOCH = {"SOURCE_DATE_EPOCH": "1790000000"}


def _eval(ds: Path, tmp: Path, *extra: str, name: str = "r") -> tuple[int, dict, str]:
    r = ks(
        "eval",
        "--in",
        ds,
        "--out",
        tmp / f"{name}.jsonl",
        "--report",
        tmp / f"{name}.json",
        *extra,
        env=EPOCH,
    )
    rep = json.loads((tmp / f"{name}.json").read_text()) if (tmp / f"{name}.json").exists() else {}
    return r.returncode, rep, r.stdout + r.stderr


def test_verification_only_scores_gold_at_one_and_sets_every_fingerprint(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    code, rep, out = _eval(dataset["final"], tmp_path, "--runner", "verification_only")
    assert code == 0, out
    s = rep["summary"]
    assert s["integration_f1_lax"] == 1.0 and s["integration_f1_strict"] == 1.0
    assert s["integration_f1_lax_macro"] == 1.0 and s["fixture_hit_rate"] == 1.0
    assert s["json_args_valid_rate"] == 1.0 and s["privacy_ok_rate"] == 1.0 and s["control_integration"] == 0
    assert s["call_sequence_parity"] == 1.0 and s["token_align_ok_rate"] >= 0.995
    assert s["call_accuracy"] == 1.0 and s["call_error_types"] == {}
    assert s["eligible_items"] >= 150 and s["fixture_miss_count"] == 0
    h = rep["header"]
    for k in (
        "model_fingerprint",
        "dataset_sha256",
        "tool_registry_sha256",
        "tokenizer_fingerprint",
        "prompt_wrapper_sha256",
        "fixtures_sha256",
        "code_version",
        "created_at",
    ):
        assert h[k], k
    assert h["runner"] == "verification_only" and "not a model" in h["proves"]
    assert all(g["status"] == "pass" for g in rep["gates"].values())
    assert "integration_f1_lax" in out and "PASS" in out


def test_reports_and_results_are_byte_identical_across_runs(dataset: dict[str, Path], tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert _eval(dataset["final"], tmp_path, "--runner", "verification_only", name=name)[0] == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    ra, rb = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    ra.pop("results_path"), rb.pop("results_path")
    assert ra == rb


def _predictions(dataset: Path, tmp: Path, edit) -> Path:  # noqa: ANN001
    rows = read_rows(dataset)[1:]
    return write_rows(tmp / "pred.jsonl", [{"id": it["id"], "output": edit(it)} for it in rows])


def test_predictions_runner_perfect_transcripts_pass(dataset: dict[str, Path], tmp_path: Path) -> None:
    pred = _predictions(dataset["final"], tmp_path, lambda it: it["teacher_text"])
    code, rep, out = _eval(dataset["final"], tmp_path, "--runner", "predictions", "--predictions", str(pred))
    assert code == 0, out
    assert rep["summary"]["integration_f1_strict"] == 1.0
    assert rep["header"]["model_fingerprint"].startswith("predictions:")


def test_predictions_without_integration_fail_the_f1_gate(dataset: dict[str, Path], tmp_path: Path) -> None:
    strip = re.compile(r"\n" + INTEGRATION + r"[^\n]*")
    pred = _predictions(dataset["final"], tmp_path, lambda it: strip.sub("", it["teacher_text"]))
    code, rep, _ = _eval(dataset["final"], tmp_path, "--runner", "predictions", "--predictions", str(pred))
    assert code == 1
    assert rep["summary"]["integration_f1_lax"] == 0.0
    assert rep["gates"]["integration_f1_lax"]["status"] == "fail"  # 0.0 is a value, and it fails
    assert rep["gates"]["fixture_hit_rate"]["status"] == "pass"


def test_wrong_calls_are_counted_as_fixture_misses(dataset: dict[str, Path], tmp_path: Path) -> None:
    def garble(it: dict) -> str:
        return it["teacher_text"].replace('"arguments": {', '"arguments": {"zz_unknown": 1, ', 1)

    pred = _predictions(dataset["final"], tmp_path, garble)
    code, rep, _ = _eval(dataset["final"], tmp_path, "--runner", "predictions", "--predictions", str(pred))
    s = rep["summary"]
    assert code == 1
    assert s["fixture_hit_rate"] < 0.6 and s["fixture_miss_count"] > 0
    assert s["json_args_valid_rate"] < 0.6 and rep["gates"]["json_args_valid_rate"]["status"] == "fail"
    r = ks("eval", "fixture-stats", "--report", tmp_path / "r.json")
    assert r.returncode == 0 and "miss x" in r.stdout and "fixture_hit_rate" in r.stdout


def test_fixture_stats_lists_the_most_frequent_misses_first(tmp_path: Path) -> None:
    misses = [
        {"tool": "web.search", "key": k, "count": n} for k, n in (("a", 1), ("b", 5), ("c", 2), ("d", 5))
    ]
    summary = {"fixture_hit_rate": 0.5, "tool_calls": 26, "fixture_miss_count": 13, "fixture_misses": misses}
    (tmp_path / "r.json").write_text(json.dumps({"summary": summary}))
    r = ks_here("eval", "fixture-stats", "--report", tmp_path / "r.json", "--top", "3")
    assert r.returncode == 0
    assert r.stdout.splitlines()[1:] == [
        f"  miss x{n}  web.search  {k}" for k, n in (("b", 5), ("d", 5), ("c", 2))
    ]


def test_a_missing_fingerprint_fails_the_run(dataset: dict[str, Path], tmp_path: Path) -> None:
    # The generated (not extracted) dataset has no tokenizer fingerprint.
    code, rep, out = _eval(
        dataset["gen"], tmp_path, "--runner", "verification_only", "--tokenizer", "smollm2"
    )
    assert code == 1
    assert rep["gates"]["fingerprints_complete"]["status"] == "fail"
    assert any("tokenizer_fingerprint is null" in p for p in rep["summary"]["fingerprint_problems"])
    assert "FAIL" in out


def test_control_item_with_a_tool_call_is_a_hard_fail(dataset: dict[str, Path], tmp_path: Path) -> None:
    call = '<tool_call>{"name": "web.search", "arguments": {"query": "x"}}</tool_call>'

    def edit(it: dict) -> str:
        if it["metadata"]["expected_behaviour"] == "no_tool":
            return call + "\n" + it["teacher_text"]
        return it["teacher_text"]

    pred = _predictions(dataset["final"], tmp_path, edit)
    code, rep, _ = _eval(dataset["final"], tmp_path, "--runner", "predictions", "--predictions", str(pred))
    n_no_tool = sum(
        it["metadata"]["expected_behaviour"] == "no_tool" for it in read_rows(dataset["final"])[1:]
    )
    assert code == 1 and rep["summary"]["control_integration"] == n_no_tool > 0
    g = rep["gates"]["control_integration"]
    assert g["status"] == "fail" and g["severity"] == "hard"


@pytest.mark.parametrize("runner_args", [("--runner", "predictions"), ("--runner", "nope")])
def test_runner_usage_errors_exit_2(dataset: dict[str, Path], tmp_path: Path, runner_args: tuple) -> None:
    code, _, out = _eval(dataset["final"], tmp_path, *runner_args)
    assert code == 2 and out.startswith("error:")
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.jsonl").exists()


# ---- what a run is --------------------------------------------------------------------------------------


def _identity() -> RunIdentity:
    facts = RunnerFacts(
        "predictions", "predictions:" + "a" * 64, prompt_wrapper_sha256("system"), {"mode": "external"}
    )
    inputs = RunInputs("d" * 64, "r" * 64, "t" * 64, "f" * 64, 7, "0.1.0+gabc")
    return RunIdentity(facts, inputs, items_total=240)


def test_the_report_header_and_a_shards_first_line_say_what_the_run_is() -> None:
    ident = _identity()
    assert sorted(ident.header()) == [
        "code_version", "created_at", "dataset_sha256", "decoding", "fixtures_sha256", "model_fingerprint",
        "prompt_wrapper_sha256", "proves", "report_version", "runner", "seed", "tokenizer_fingerprint",
        "tool_registry_sha256",
    ]  # fmt: skip
    assert ident.header()["proves"] == "model" and ident.header()["report_version"] == "1"
    first = ident.shard_header((1, 2), [0, 3], ["x is null or unknown"])
    assert sorted(first) == sorted(
        {*ident.header(), "__header__", "shard", "items_total", "positions", "fingerprint_problems"}
        - {"created_at"}
    )
    assert first["shard"] == [1, 2] and first["items_total"] == 240
    back = RunIdentity.from_shard_header(json.loads(json.dumps(first)), Path("s1.jsonl"))
    assert back == ident and back.agrees_with(ident)
    del first["seed"]
    with pytest.raises(InputError, match=r"s1.jsonl:1: seed: missing field"):
        RunIdentity.from_shard_header(first, Path("s1.jsonl"))


def test_run_identities_agree_only_when_every_field_does() -> None:
    a = _identity()
    assert a.agrees_with(_identity()) and a.differences(_identity()) == []
    seed = replace(a, inputs=replace(a.inputs, seed=8))
    assert not a.agrees_with(seed) and a.differences(seed) == ["seed"]
    decoding = replace(a, facts=replace(a.facts, decoding={"mode": "greedy"}))
    assert a.differences(decoding) == ["decoding"]
    assert a.differences(replace(a, items_total=239)) == ["items_total"]
    verify = RunnerFacts(
        "verification_only", "verification_only:" + "e" * 64, a.facts.prompt_wrapper_sha256, {}
    )
    other = replace(a, facts=verify, inputs=replace(a.inputs, dataset_sha256="e" * 64), items_total=239)
    # the dataset is named first: the likeliest mix-up of shards
    assert a.differences(other) == [
        "dataset_sha256",
        "items_total",
        "runner",
        "model_fingerprint",
        "decoding",
    ]
    assert other.header()["proves"] == "scorer (gold text), not a model"
