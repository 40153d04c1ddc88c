"""More bad input (review reliability.md D13): each gives one line naming file, line and field where there is
one, exit code 2, and no output, never a traceback. The real CLI runs in this process (`ks_here`: every case
refuses before any work), one case as its own process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import ks, ks_here, read_rows

DEEP = '{"id": "x", "a": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
BIG_INT = '{"id": "x", "a": ' + "9" * 5000 + "}\n"


def _one_line_error(r, *needles: str) -> str:  # noqa: ANN001
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _dataset_with(final: Path, edit, folder: Path) -> Path:  # noqa: ANN001
    """The dataset with line 4 (an item that calls a tool) replaced by `edit(item)`, a JSON text."""
    header, *items = read_rows(final)
    header["fixtures_dir"] = str(final.parent / header["fixtures_dir"])  # the copy lies elsewhere
    j = next(k for k, it in enumerate(items) if k >= 2 and it["metadata"]["call_sequence"])
    items = [items[0], items[1], items[j], *items[2:j], *items[j + 1 :]]
    lines = [json.dumps(r, ensure_ascii=False) for r in (header, *items)]
    lines[3] = edit(items[2])
    bad = folder / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return bad


def _meta(key: str, value: object):  # noqa: ANN202
    def edit(item: dict) -> str:
        item = json.loads(json.dumps(item))
        item["metadata"][key] = value
        return json.dumps(item)

    return edit


def _nan_argument(item: dict) -> str:
    item = json.loads(json.dumps(item))
    item["metadata"]["call_sequence"][0]["arguments"]["zz"] = float("nan")
    return json.dumps(item)  # json.dumps writes NaN, which is not JSON


DATASET_CASES = {
    # a lone surrogate escape: extract and eval failed to encode it, verify to tokenize it
    "surrogate_id": (
        lambda it: json.dumps(it).replace('"id": "', '"id": "\\ud800', 1),
        ":4: id: a lone surrogate",
    ),
    "surrogate_teacher_text": (
        lambda it: json.dumps(it).replace('"teacher_text": "', '"teacher_text": "x\\udc80', 1),
        ":4: teacher_text: a lone surrogate",
    ),
    "nan_argument": (_nan_argument, ":4: -: malformed JSON: NaN is not a JSON number"),
    "token_spans_int": (
        _meta("integration_spans_tokens", 5),
        ":4: metadata.integration_spans_tokens: expected array, got int",
    ),
    "adversarial_str": (_meta("adversarial", "yes"), ":4: metadata.adversarial: expected object or null"),
}


@pytest.mark.parametrize("case", sorted(DATASET_CASES))
@pytest.mark.parametrize("stage", ["eval", "extract", "verify"])
def test_bad_dataset_item(case: str, stage: str, dataset: dict[str, Path], tmp_path: Path) -> None:
    edit, expected = DATASET_CASES[case]
    bad = _dataset_with(dataset["final"], edit, tmp_path)
    out, rep = tmp_path / "out.jsonl", tmp_path / "rep.json"
    args = {
        "eval": ("eval", "--runner", "verification_only", "--in", bad, "--out", out, "--report", rep),
        "extract": ("contextual", "extract", "--in", bad, "--out", out),
        "verify": ("contextual", "verify", "--in", bad, "--report", rep),
    }[stage]
    r = ks_here(*args)
    _one_line_error(r, str(bad), expected)
    assert not out.exists() and not rep.exists()


@pytest.mark.parametrize(
    "payload, expected", [(DEEP, "nested too deep"), (BIG_INT, "an integer of more than 4300 digits")]
)
@pytest.mark.parametrize("kind", ["dataset", "predictions", "prompts", "fixtures"])
def test_deep_json_and_huge_integers_in_any_jsonl(
    kind: str, payload: str, expected: str, dataset: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(payload, encoding="utf-8")
    out, rep = tmp_path / "out.jsonl", tmp_path / "rep.json"
    ev = ("eval", "--runner", "verification_only", "--in", dataset["final"], "--out", out, "--report", rep)
    if kind == "fixtures":
        (tmp_path / "fx").mkdir()
        bad = bad.rename(tmp_path / "fx" / "math.eval.jsonl")
    args = {
        "dataset": ("contextual", "extract", "--in", bad, "--out", out),
        "predictions": ("eval", "--runner", "predictions", "--predictions", bad, *ev[3:]),
        "prompts": ("kd-mix", "--prompts", bad, "--out", out, "--teacher", "http://127.0.0.1:9/v1"),
        "fixtures": (*ev, "--fixtures", tmp_path / "fx"),
    }[kind]
    _one_line_error(ks_here(*args), f"{bad}:1: -: malformed JSON: {expected}")
    assert not out.exists() and not rep.exists()


@pytest.mark.parametrize(
    "row, expected",
    [
        ('{"id": "a", "prompt": "hi \\ud800"}', ":1: prompt: a lone surrogate"),
        (
            '{"id": "a", "messages": [{"role": "user", "content": "\\udfff"}]}',
            ":1: messages[0].content: a lone",
        ),
        ('{"id": "a", "messages": ["hi"]}', ":1: messages: each message must be an object"),
    ],
)
def test_bad_kd_mix_prompts(row: str, expected: str, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(row + "\n", encoding="utf-8")
    out = tmp_path / "kd" / "kd.jsonl"
    r = ks_here("kd-mix", "--prompts", prompts, "--out", out, "--teacher", "http://127.0.0.1:9/v1")
    _one_line_error(r, f"{prompts}{expected}")
    assert not out.parent.exists()


def test_fixture_file_that_is_a_folder(dataset: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "fx" / "math.eval.jsonl").mkdir(parents=True)
    out, rep = tmp_path / "out.jsonl", tmp_path / "rep.json"
    ev = ("eval", "--runner", "verification_only", "--in", dataset["final"], "--out", out, "--report", rep)
    r = ks_here(*ev, "--fixtures", tmp_path / "fx")
    _one_line_error(r, f"{tmp_path / 'fx' / 'math.eval.jsonl'}: -: a fixture file must be a file")
    assert not out.exists() and not rep.exists()


def test_toy_config_that_is_a_list(tmp_path: Path) -> None:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text("- data\n- gates\n", encoding="utf-8")
    r = ks("toy-e2e", "--config", cfg, "--out", tmp_path / "run")  # one case as its own process
    _one_line_error(r, f"{cfg}: -: expected a mapping of sections, got list")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "manifest, expected",
    [
        ([1], "expected a JSON object, got list"),
        ({"format": "coreml-mlprogram"}, "packages: missing or not a list"),
        (
            {"format": "coreml-mlprogram", "packages": [{"name": "seq64.mlpackage"}]},
            "packages[0].files: missing",
        ),
        ({"format": "onnx", "files": "model.onnx"}, "files: missing or not a list"),
    ],
)
def test_export_verify_malformed_manifest(manifest: object, expected: str, tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    _one_line_error(ks_here("export", "verify", tmp_path), f"{tmp_path / 'manifest.json'}: {expected}")


@pytest.mark.parametrize(
    "report, field",
    [
        ([], "summary"),
        ({"summary": []}, "summary"),
        ({"summary": {}}, "summary.tool_calls"),
        ({"summary": {"fixture_hit_rate": "x", "tool_calls": 1}}, "summary.fixture_hit_rate"),
        (
            {"summary": {"tool_calls": 1, "fixture_miss_count": 0, "fixture_misses": [1]}},
            "summary.fixture_misses[0]",
        ),
    ],
)
def test_fixture_stats_on_a_malformed_report(report: object, field: str, tmp_path: Path) -> None:
    path = tmp_path / "rep.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    _one_line_error(ks_here("eval", "fixture-stats", "--report", path), f"{path}: {field}: ")
