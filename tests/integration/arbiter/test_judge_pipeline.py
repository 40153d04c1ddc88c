"""The Judge end to end on small inputs: `judge data` -> `train --config judge` (a few steps of the toy Judge)
-> `judge eval`: the report's figures are recomputed from its own results file, a padded prompt is the stored
case re-rendered, the gates are applied (and fail: a few steps teach little), the exit code says so; then
`export coreml` -> `judge eval --runner coreml` -> `judge compare` with the PyTorch run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kimi_student.arbiter.judge_scores import (
    read_verdict,
    read_winner,
    score_pairs,
    score_singles,
    score_worksheets,
)
from kimi_student.resources import config_path
from tests.support import ks_here


@pytest.fixture(scope="module")
def judge_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("judge")
    data = root / "data"
    r = ks_here("judge", "data", "--out", data, "--train", "40", "--heldout", "12", "--seed", "2")
    assert r.returncode == 1 and "heldout_size" in r.stdout  # too small to gate on; the files are whole
    # the toy Judge with one layer and one row a step: what is tested is the plumbing, and a layer is a quarter
    # of the Core ML conversion's ops (two decoder functions, the suite's longest conversion)
    cfg = yaml.safe_load(config_path("judge.yaml").read_text(encoding="utf-8"))
    cfg["sizes"]["toy"]["arch"]["num_hidden_layers"] = 1
    cfg["sizes"]["toy"]["train"]["batch_size"] = 1
    (root / "judge.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    r = ks_here(
        "train",
        "--config",
        root / "judge.yaml",
        "--size",
        "toy",
        "--data",
        data / "train_sft.jsonl",
        "--out",
        root / "run",
        "--max-steps",
        "6",
        "--precision",
        "no",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return data, root / "run" / "final"


EVAL_ARGS = ("--limit", "1", "--batch-size", "2", "--max-new-tokens", "12")  # a case and its pair: each
# record is ~20 calls of the MIL executor at a context of 1,024


def judge_eval_args(judge_run: tuple[Path, Path], *more: object) -> tuple[object, ...]:
    """`judge eval` of the trained Judge on the held-out set's first case and pair, with `more`."""
    data, model = judge_run
    return ("judge", "eval", "--model", model, "--data", data / "heldout.jsonl", *EVAL_ARGS, *more)


@pytest.fixture(scope="module")
def hf_eval(judge_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`judge eval` of the trained Judge in PyTorch on the first case: (report, stdout)."""
    data, model = judge_run
    report = tmp_path_factory.mktemp("eval") / "caws_eval.json"
    r = ks_here(
        "judge", "eval", "--model", model, "--data", data / "heldout.jsonl", "--report", report, *EVAL_ARGS
    )
    assert r.returncode == 1, r.stderr[-2000:]  # gates fail (and are inconclusive under min_items)
    return report, r.stdout


def test_judge_eval_reports_what_its_results_say(
    judge_run: tuple[Path, Path], hf_eval: tuple[Path, str]
) -> None:
    from kimi_student.arbiter.judge_data import audit_target
    from kimi_student.arbiter.ruling import PAIR_RULINGS, worksheet
    from kimi_student.jsonl import read_jsonl

    report, stdout = hf_eval
    rep = json.loads(report.read_text())
    rows = [json.loads(line) for line in report.with_suffix(".results.jsonl").read_text().splitlines()]
    singles = [x for x in rows if "padded_output" in x]
    pairs = [x for x in rows if "padded_output" not in x]
    assert (
        (len(singles), len(pairs)) == (1, 2) == (rep["header"]["single_cases"], rep["header"]["pair_records"])
    )
    again = score_singles(
        [x["label"] for x in singles],
        [x["output"] for x in singles],
        [x["status_probabilities"] for x in singles],
        [x.get("raw_output", x["output"]) for x in singles],
    )
    assert again == rep["singles"]
    # six steps teach no verdict: the free output is none, and the case is ruled under the grammar
    ruled = rep["header"]["ruled_under_grammar"]
    assert rep["header"]["ruling"] == "grammar" and (
        ruled["singles"],
        ruled["padded"],
        ruled["candidates"],
    ) == (1, 1, 0)
    assert ruled["pairs"] == sum("raw_output" in x for x in pairs) == 2  # six steps name no winner
    assert rep["singles"]["raw_valid_rate"] == 0.0 and rep["singles"]["valid_rate"] == 1.0
    for x in singles:
        assert x["read"] == "constrained" and read_verdict(x["raw_output"]).how != "raw"
        assert read_verdict(x["output"]).how == read_verdict(x["padded_output"]).how == "raw"
    assert (
        score_pairs(pairs, [x["output"] for x in pairs], [x.get("raw_output", x["output"]) for x in pairs])
        == rep["pairs"]
    )
    for x in pairs:  # a pair's free output that names no winner is ruled over the pair rulings
        assert (x["read"] == "constrained") == ("raw_output" in x)
        assert x["output"] in PAIR_RULINGS or x["read"] == "raw"
    for x in singles:
        p = x["status_probabilities"]
        assert set(p) == {"PASS", "FAIL", "WAIVER_REQUIRED"} and abs(sum(p.values()) - 1) < 1e-5
    assert rep["passed"] is False and {g["status"] for g in rep["gates"].values()} <= {
        "fail",
        "inconclusive",
        "pass",
    }
    recs = {r["id"]: r for _, r in read_jsonl(judge_run[0] / "heldout.jsonl") if r.get("mode") == "single"}
    sheets = [worksheet(x["raw_output"], x["looping"]) for x in singles]
    oracle = [audit_target(recs[x["id"]])[1] for x in singles]
    w = rep["worksheets"]
    assert {k: w[k] for k in w if k != "ruling_follows_checks"} == score_worksheets(sheets, oracle)
    assert w["cases"] == sum(s is not None for s in sheets)
    assert rep["gates"]["agreement"]["status"] == "inconclusive"  # 1 case < min_items 600
    assert rep["header"]["model_fingerprint"] and len(rep["header"]["dataset_sha256"]) == 64
    assert "agreement" in stdout and "FAILED" in stdout


def test_judge_eval_resumes_from_its_journal(
    judge_run: tuple[Path, Path], hf_eval: tuple[Path, str], tmp_path: Path
) -> None:
    """A killed run's journal (here: its first chunk of single cases, a forged output to tell it apart) is
    read back and the rest decoded; the results are the uninterrupted run's but for that output; the journal
    is gone once the report is written. A journal of other settings is refused until --fresh drops it."""
    from kimi_student.arbiter.journal import Journal, journal_path
    from kimi_student.arbiter.judge_eval import run_key
    from kimi_student.fingerprint import model_folder_sha256

    data, model = judge_run
    first, _ = hf_eval
    report = tmp_path / "caws_eval.json"
    forged = '{"status": "PASS", "violated_clauses": [], "rationale": "read back from the journal"}'
    key = run_key(model_folder_sha256(model), data / "heldout.jsonl", 1, 2, "fp32", 12, "hf_local")
    Journal(journal_path(report), key).add("singles", 0, [forged])
    args = ("judge", "eval", "--model", model, "--data", data / "heldout.jsonl", "--report", report)
    r = ks_here(*args, *EVAL_ARGS)
    assert r.returncode == 1, r.stderr[-2000:]
    assert not journal_path(report).exists()
    rows = [json.loads(x) for x in report.with_suffix(".results.jsonl").read_text().splitlines()]
    before = [json.loads(x) for x in first.with_suffix(".results.jsonl").read_text().splitlines()]
    assert rows[0]["output"] == forged != before[0]["output"]
    assert [x["output"] for x in rows[1:]] == [x["output"] for x in before[1:]]  # the pairs: decoded
    assert rows[0]["padded_output"] == before[0]["padded_output"]
    assert json.loads(report.read_text())["seconds_per_single_case"] is None  # no single case decoded here

    Journal(journal_path(report), {**key, "max_new_tokens": 99})
    r = ks_here(*args, *EVAL_ARGS)
    assert r.returncode == 2 and "max_new_tokens" in r.stderr and "--fresh" in r.stderr
    r = ks_here(*args, *EVAL_ARGS, "--fresh")
    assert r.returncode == 1 and not journal_path(report).exists()
    rows = [json.loads(x) for x in report.with_suffix(".results.jsonl").read_text().splitlines()]
    assert [x["output"] for x in rows] == [x["output"] for x in before]


def test_judge_eval_refuses_a_set_that_is_not_a_judge_set(
    judge_run: tuple[Path, Path], tmp_path: Path
) -> None:
    _, model = judge_run
    bad = tmp_path / "x.jsonl"
    bad.write_text(
        '{"__header__": true, "dataset_version": "contextual-3"}\n{"id": "a", "prompt": "p", "mode": "single"}\n'
    )
    r = ks_here("judge", "eval", "--model", model, "--data", bad, "--report", tmp_path / "r.json")
    assert r.returncode == 2 and "dataset_version" in r.stderr and not (tmp_path / "r.json").exists()


def test_judge_eval_under_the_copy_rule(
    judge_run: tuple[Path, Path], hf_eval: tuple[Path, str], tmp_path: Path
) -> None:
    """--copy case decodes as the free run wherever the Judge writes no value the case lacks (the toy writes
    none: the same outputs), and says so in its report; Core ML decodes without the rule: refused. What the
    rule forbids is tested on a model that does write one (tests/unit/arbiter/test_judge_copying.py)."""
    from kimi_student.jsonl import read_jsonl

    args = judge_eval_args(judge_run)
    report = tmp_path / "copied.json"
    r = ks_here(*args, "--report", report, "--copy", "case")
    assert r.returncode == 1, r.stderr[-2000:]
    assert json.loads(report.read_text())["header"]["copy"] == "case"
    assert json.loads(hf_eval[0].read_text())["header"]["copy"] == "free"
    free = [x for _, x in read_jsonl(hf_eval[0].with_suffix(".results.jsonl"))]
    assert [x for _, x in read_jsonl(report.with_suffix(".results.jsonl"))] == free
    r = ks_here(*args, "--runner", "coreml", "--copy", "case", "--report", tmp_path / "c.json")
    assert r.returncode == 2 and "--copy" in r.stderr and "hf_local" in r.stderr
    assert not (tmp_path / "c.json").exists()


def test_judge_eval_under_the_line_forms(judge_run: tuple[Path, Path], tmp_path: Path) -> None:
    """--copy lines reads the forms of the training set beside --data and holds the toy (trained on verdicts,
    so it writes `{"status"` freely) to a checks list of lines in form; --ruling lines rules each case as
    those lines imply; the report names the forms. A --forms file that is not there is refused (exit 2)
    before anything is written."""
    from kimi_student.arbiter.judge_eval import looping
    from kimi_student.arbiter.line_forms import LineForms, LineRule
    from kimi_student.arbiter.ruling import implied_ruling, worksheet
    from kimi_student.chat.template import ChatTokenizer
    from kimi_student.jsonl import read_jsonl

    data, model = judge_run
    args = judge_eval_args(judge_run, "--copy", "lines")
    report = tmp_path / "lines.json"
    r = ks_here(*args, "--max-new-tokens", "80", "--ruling", "lines", "--report", report)
    assert r.returncode == 1, r.stderr[-2000:]
    header = json.loads(report.read_text())["header"]
    assert header["copy"] == "lines" and header["ruling"] == "lines" and header["line_forms"]["forms"] > 10
    assert header["line_forms"]["path"] == str(data / "train_audit_sft.jsonl")
    forms, chat = LineForms.from_training(data / "train_audit_sft.jsonl"), ChatTokenizer(model)
    cases = {x["id"]: x for _, x in read_jsonl(data / "heldout.jsonl") if x.get("mode") == "single"}
    singles = [x for _, x in read_jsonl(report.with_suffix(".results.jsonl")) if "padded_output" in x]
    assert singles
    for x in singles:
        raw = x.get("raw_output", x["output"])
        lines = worksheet(raw, looping(raw))
        assert lines, raw  # a line completed in 80 tokens
        ids = chat.prompt_ids([{"role": "user", "content": cases[x["id"]]["prompt"]}])
        rule = LineRule(forms, chat.tok.decode(ids, skip_special_tokens=True))  # what the rule read
        assert all(rule.holds(line) for line in lines), lines
        assert json.loads(x["output"])["status"] == implied_ruling(lines)[0]
    r = ks_here(*args, "--report", tmp_path / "m.json", "--forms", tmp_path / "missing.jsonl")
    assert r.returncode == 2 and "missing.jsonl" in r.stderr and not (tmp_path / "m.json").exists()
    free = [a for a in args if a not in ("--copy", "lines")]
    r = ks_here(*free, "--report", tmp_path / "f.json", "--forms", data / "train_audit_sft.jsonl")
    assert r.returncode == 2 and "--forms" in r.stderr and not (tmp_path / "f.json").exists()


def test_judge_eval_asks_each_group_of_checks(judge_run: tuple[Path, Path], tmp_path: Path) -> None:
    """--ask groups puts each case (its padded twin, a pair's two candidates) to the Judge once per group of
    checks: a result's raw output is its four answers, each held to the line forms under its own question, its
    verdict what their joined lines imply, its probabilities a distribution; raw validity counts the cases whose
    every answer is a checks list. Without --ruling lines it is refused (exit 2) before anything is written."""
    from kimi_student.arbiter.groups import GROUPS, case_of, questions
    from kimi_student.arbiter.judge_eval import group_worksheet, looping
    from kimi_student.arbiter.line_forms import LineForms, LineRule
    from kimi_student.arbiter.ruling import implied_ruling, worksheet
    from kimi_student.chat.template import ChatTokenizer
    from kimi_student.jsonl import read_jsonl

    data, model = judge_run
    args = judge_eval_args(judge_run, "--ask", "groups", "--copy", "lines", "--pairwise", "rulings")
    args += ("--max-new-tokens", "80")
    report = tmp_path / "groups.json"
    r = ks_here(*args, "--ruling", "lines", "--report", report)
    assert r.returncode == 1, r.stderr[-2000:]
    rep = json.loads(report.read_text())
    assert rep["header"]["ask"] == "groups"
    forms, chat = LineForms.from_training(data / "train_audit_sft.jsonl"), ChatTokenizer(model)
    cases = {x["id"]: x for _, x in read_jsonl(data / "heldout.jsonl") if x.get("mode") == "single"}
    singles = [x for _, x in read_jsonl(report.with_suffix(".results.jsonl")) if "padded_output" in x]
    assert singles
    for x in singles:
        answers = json.loads(x["raw_output"])
        assert len(answers) == len(GROUPS)
        for question, answer in zip(questions(*case_of(cases[x["id"]])), answers, strict=True):
            ids = chat.prompt_ids([{"role": "user", "content": question}])
            rule = LineRule(forms, chat.tok.decode(ids, skip_special_tokens=True))
            lines = worksheet(answer, looping(answer))
            assert lines is not None and all(rule.holds(line) for line in lines), answer
        checks, _ = group_worksheet(x["raw_output"])
        if checks:
            assert json.loads(x["output"])["status"] == implied_ruling(checks)[0]
        assert sum(x["status_probabilities"].values()) == pytest.approx(1)
    complete = [group_worksheet(x["raw_output"])[1] for x in singles]
    assert rep["summary"]["raw_valid_rate"] == sum(complete) / len(complete)
    r = ks_here(*args, "--report", tmp_path / "n.json")
    assert r.returncode == 2 and "--ruling lines" in r.stderr and not (tmp_path / "n.json").exists()


def test_the_core_ml_judge_is_gated_and_compared_with_pytorch(
    judge_run: tuple[Path, Path], hf_eval: tuple[Path, str], tmp_path: Path
) -> None:
    """`export coreml` of the Judge, `judge eval --runner coreml` (its stateful decoder in the MIL executor)
    and `judge compare` against the PyTorch run of the same cases: the comparison is the two results files'."""
    from kimi_student.arbiter.judge_scores import compare_results

    data, model = judge_run
    pkg = tmp_path / "coreml"
    r = ks_here(
        "export",
        "coreml",
        "--model",
        model,
        "--out",
        pkg,
        "--shapes",
        "1024",
        "--chunks",
        "128",
        "--no-sequence",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    report = tmp_path / "coreml.json"
    r = ks_here(
        "judge", "eval", "--runner", "coreml", "--model", pkg, "--data", data / "heldout.jsonl",
        "--report", report, *EVAL_ARGS,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr[-2000:]  # the gates fail; the run is whole
    assert sorted(p.name for p in pkg.glob("*.mlpackage")) == ["decode1024.mlpackage"]  # the decoder alone
    r = ks_here(
        "export", "coreml", "--model", model, "--out", tmp_path / "none", "--no-sequence", "--no-decode"
    )
    assert r.returncode == 2 and "nothing to export" in r.stderr and not (tmp_path / "none").exists()
    head = json.loads(report.read_text())["header"]
    assert head["runner"] == "coreml" and head["decoding"]["decoder"] == "stateful"
    assert head["decoding"]["q_lens"] == [1, 128] and head["decoding"]["context"] == 1024
    results = [x.with_suffix(".results.jsonl") for x in (hf_eval[0], report)]
    rows = [[json.loads(x) for x in p.read_text().splitlines()] for p in results]
    want = compare_results(*rows)
    assert want["records"] == 3 and want["status_probability_max_diff"] < 0.05
    r = ks_here("judge", "compare", *results, "--report", tmp_path / "cmp.json")
    assert r.returncode == (0 if not want["differ"] + want["differ_padded"] else 1), r.stderr
    assert json.loads((tmp_path / "cmp.json").read_text()) == want
    assert f"verdicts identical {want['verdicts_identical']:.4f}" in r.stdout
    bad = tmp_path / "short.results.jsonl"
    bad.write_text("\n".join(results[0].read_text().splitlines()[:-1]) + "\n")
    r = ks_here("judge", "compare", results[0], bad)
    assert r.returncode == 2 and "not comparable" in r.stderr


def test_judge_eval_rules_pairs_from_single_rulings(judge_run: tuple[Path, Path], tmp_path: Path) -> None:
    """--pairwise rulings: each candidate decoded once as a single case, both orders of a pair ruled from the
    same two outputs. Then the same run with its rulings forged in the journal (PASS for a, FAIL for b): the
    pair's ruling is the better status, swap-consistent, scored against the oracle's winner."""
    from kimi_student.arbiter.journal import Journal, journal_path
    from kimi_student.arbiter.judge_eval import ruled_pair, run_key
    from kimi_student.fingerprint import model_folder_sha256

    data, model = judge_run
    args = judge_eval_args(judge_run)
    report = tmp_path / "decoded.json"
    r = ks_here(*args, "--report", report, "--pairwise", "rulings")
    assert r.returncode == 1, r.stderr[-2000:]
    assert json.loads(report.read_text())["header"]["pairwise"] == "rulings"
    ab, ba = [json.loads(x) for x in report.with_suffix(".results.jsonl").read_text().splitlines()][1:]
    assert ab["rulings"] == ba["rulings"][::-1] and ab["rulings"][0] != ""
    assert [ab["output"], ba["output"]] == [ruled_pair(*ab["rulings"]), ruled_pair(*ba["rulings"])]
    # the toy's free rulings are no verdicts; each candidate was ruled again under the grammar
    assert ab["raw_rulings"] == ba["raw_rulings"][::-1] != ab["rulings"]
    assert all(read_verdict(x).how == "raw" for x in ab["rulings"]) and read_winner(ab["output"]).how == "raw"

    report = tmp_path / "forged.json"
    said = [
        json.dumps({"status": s, "violated_clauses": c, "rationale": "forged"})
        for s, c in (("PASS", []), ("FAIL", ["GATE_INTEGRITY"]))
    ]
    key = run_key(model_folder_sha256(model), data / "heldout.jsonl", 1, 2, "fp32", 12, "hf_local", "rulings")
    Journal(journal_path(report), key).add("rulings", 0, said)
    r = ks_here(*args, "--report", report, "--pairwise", "rulings")
    assert r.returncode == 1, r.stderr[-2000:]
    rep = json.loads(report.read_text())
    ab, ba = [json.loads(x) for x in report.with_suffix(".results.jsonl").read_text().splitlines()][1:]
    assert ab["rulings"] == said == ba["rulings"][::-1]
    assert json.loads(ab["output"]) == {"a": "PASS", "b": "FAIL", "winner": "a"}
    assert json.loads(ba["output"]) == {"a": "FAIL", "b": "PASS", "winner": "b"}
    assert rep["pairs"]["swap_consistency"] == 1.0 and rep["pairs"]["errors"] == 0
    # the heldout's first pair as the oracle rules it (a tie is no decided pair: accuracy 0 of 0 reads 0)
    assert rep["pairs"]["pairwise_accuracy"] == float(ab["label"]["winner"] == "a")


def test_judge_lines_reads_every_check_line_of_the_cases(
    judge_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """`judge lines` on the first two held-out cases: a row for each check line of their audit targets and one
    for each status, the table's counts are those rows', and a missed line names the token it wanted, which is
    the oracle's next token there."""
    from kimi_student.arbiter.judge_data import target_text

    data, model = judge_run
    report = tmp_path / "lines.json"
    args = ("--model", model, "--data", data / "heldout.jsonl", "--limit", "2", "--report", report)
    r = ks_here("judge", "lines", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(report.read_text())
    records = [json.loads(x) for x in (data / "heldout.jsonl").read_text().splitlines()[1:3]]
    checks = [line for rec in records for line in json.loads(target_text(rec, "audit"))["checks"]]
    lines = [x for x in rep["lines"] if "group" in x]
    assert [x["line"] for x in lines] == checks
    assert rep["table"]["all broken"]["lines"] + rep["table"]["all ok"]["lines"] == len(checks)
    assert rep["table"]["status"]["lines"] == 2 and rep["single_cases"] == 2
    targets = {rec["id"]: target_text(rec, "audit") for rec in records}
    for x in lines:
        assert x["exact"] is ("want" not in x)
        if not x["exact"]:  # what it wanted is the oracle's text at that point of the line
            assert x["line"].startswith(x["before"]) and x["before"] + x["want"] in targets[x["id"]]
    assert sum(not x["exact"] for x in lines) > 0  # six steps of a toy Judge on verdicts: no audit learned
    assert "teacher-forced on 2 single cases" in r.stdout


def test_judge_sweep_reads_each_variant_in_both_contexts(
    judge_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """`judge sweep --rule files` on the first two held-out cases: one read a variant and context (`--context
    drill`: the drill's alone), in the variants' order, the table's counts are those reads'; a rule it does not
    know exits 2 and names the rules."""
    from kimi_student.arbiter.judge_sweep import variants

    data, model = judge_run
    report = tmp_path / "sweep.json"
    args = ("--model", model, "--data", data / "heldout.jsonl", "--limit", "2", "--rule", "files")
    r = ks_here("judge", "sweep", *args, "--report", report)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(report.read_text())
    records = [json.loads(x) for x in (data / "heldout.jsonl").read_text().splitlines()[1:3]]
    want = [
        (v["id"], v["delta"], v["line"], c)
        for rec in records
        for v in variants(rec, "files")
        for c in ("case", "drill")
    ]
    assert [(x["id"], x["delta"], x["line"], x["context"]) for x in rep["reads"]] == want
    for context in ("case", "drill"):
        mine = [x for x in rep["reads"] if x["context"] == context]
        t = rep["table"][context]
        assert t["breaks"]["lines"] + t["holds"]["lines"] == len(mine)
        assert t["breaks"]["right"] + t["holds"]["right"] == sum(x["right"] for x in mine)
    assert "files swept on 2 of 2 single cases" in r.stdout
    drill = ks_here("judge", "sweep", *args, "--context", "drill", "--report", report)
    assert drill.returncode == 0, drill.stderr[-2000:]
    reads = json.loads(report.read_text())["reads"]
    assert [x["context"] for x in reads] == ["drill"] * (len(want) // 2)
    bad = ks_here("judge", "sweep", "--model", model, "--data", data / "heldout.jsonl", "--rule", "tests")
    assert (
        bad.returncode == 2 and "coverage, files" not in bad.stderr and "files, lines, coverage" in bad.stderr
    )
