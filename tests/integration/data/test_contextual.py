from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from kimi_student.data.contextual import SCENARIOS, generate, strata
from kimi_student.numbers import LOCALES
from kimi_student.tokenizer import load_tokenizer
from kimi_student.tools.broker import load_fixtures
from kimi_student.tools.normalize import fixture_key
from tests.support import ks, ks_here, read_rows, write_rows


def test_gen_is_byte_identical_per_seed_and_differs_across_seeds(tmp_path: Path) -> None:
    outs = []
    for name, seed in (("a", 9), ("b", 9), ("c", 10)):
        r = ks("contextual", "gen", "--n", 60, "--seed", seed, "--out", tmp_path / name / "c.jsonl")
        assert r.returncode == 0, r.stderr
        outs.append((tmp_path / name / "c.jsonl").read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    fa = sorted((tmp_path / "a" / "c.jsonl.fixtures").glob("*.jsonl"))
    fb = sorted((tmp_path / "b" / "c.jsonl.fixtures").glob("*.jsonl"))
    assert len(fa) >= 6
    assert [p.read_bytes() for p in fa] == [p.read_bytes() for p in fb]


def test_strata_kinds_and_locales_are_covered() -> None:
    _, items, _ = generate(len(strata()) + 100, seed=1)
    meta = [it["metadata"] for it in items]
    cells = {(m["scenario"], m["structure"], m["complexity"], m["locale"]) for m in meta}
    assert len(cells & set(strata())) / len(strata()) == 1.0
    assert {m["locale"] for m in meta} >= set(LOCALES)
    assert set(SCENARIOS) <= {m["scenario"] for m in meta}
    beh = Counter(m["expected_behaviour"] for m in meta)
    assert beh["no_tool"] > 0 and beh["decline"] > 0 and beh["retry"] > 0
    adv = Counter((m["adversarial"] or {}).get("kind") for m in meta)
    assert adv["range_violation"] and adv["malformed_json"] and adv["ambiguity"]
    assert sum(m["negative_control"] for m in meta) > 0 and sum(m["long_context"] for m in meta) > 0
    long_item = next(it for it in items if it["metadata"]["long_context"])
    assert len(long_item["prompt"]) > 3000
    for it in items:
        assert it["prompt"].startswith("CAWS/1 level=")
        if it["metadata"]["expected_behaviour"] in ("no_tool", "decline"):
            assert it["metadata"]["call_sequence"] == [] and "<tool_call>" not in it["teacher_text"]


def test_range_violation_items_use_the_schema_limit() -> None:
    _, items, _ = generate(400, seed=2)
    rv = [it for it in items if (it["metadata"]["adversarial"] or {}).get("kind") == "range_violation"]
    assert rv
    for it in rv:
        adv = it["metadata"]["adversarial"]
        assert adv["asked"] > adv["used"]
        assert it["metadata"]["call_sequence"][-1]["arguments"][adv["field"]] == adv["used"]


def test_every_generated_call_has_its_fixture(dataset: dict[str, Path]) -> None:
    table = load_fixtures([dataset["dir"] / "c.jsonl.fixtures"])
    rows = read_rows(dataset["gen"])
    for it in rows[1:]:
        for call, res in zip(it["metadata"]["call_sequence"], it["metadata"]["tool_results"]):
            assert table[(call["name"], fixture_key(call["name"], call["arguments"]))] == res["result"]


def test_spans_are_utf8_byte_offsets_and_token_spans_decode(dataset: dict[str, Path]) -> None:
    rows = read_rows(dataset["final"])
    header, items = rows[0], rows[1:]
    tok = load_tokenizer("smollm2")
    assert header["tokenizer_fingerprint"] == tok.fingerprint
    non_ascii = 0
    for it in items:
        text = it["teacher_text"]
        raw = text.encode("utf-8")
        m = it["metadata"]
        ids = tok.encode_offsets([text])[0][0]
        non_ascii += not text.isascii() and bool(m["integration_spans_bytes"])
        for (bs, be), (ts, te) in zip(m["integration_spans_bytes"], m["integration_spans_tokens"]):
            span = raw[bs:be].decode("utf-8")
            assert span.startswith("Integration:")
            assert tok.decode(ids[ts:te]).strip() == span
        for (bs, be), call in zip(m["tool_name_spans_bytes"], m["call_sequence"]):
            assert raw[bs:be].decode("utf-8") == call["name"]
        for (bs, be), call in zip(m["json_args_spans_bytes"], m["call_sequence"]):
            assert json.loads(raw[bs:be]) == call["arguments"]
    assert non_ascii > 0  # fr-FR narrow no-break spaces make byte and character offsets differ


def test_extract_and_verify_with_a_bpe_trained_here(dataset: dict[str, Path], tmp_path: Path) -> None:
    bpe, final, rep = tmp_path / "bpe.json", tmp_path / "final.jsonl", tmp_path / "verify.json"
    assert ks("tokenizer", "train", "--in", dataset["gen"], "--out", bpe, "--vocab-size", 600).returncode == 0
    again = tmp_path / "bpe2.json"
    ks("tokenizer", "train", "--in", dataset["gen"], "--out", again, "--vocab-size", 600)
    assert bpe.read_bytes() == again.read_bytes()  # deterministic training
    # extract and verify in this process (the dataset fixture runs extract in its own; verify's exit 1 below)
    r = ks_here("contextual", "extract", "--in", dataset["gen"], "--out", final, "--tokenizer", bpe)
    assert r.returncode == 0, r.stderr
    r = ks_here("contextual", "verify", "--in", final, "--report", rep)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(rep.read_text())
    assert report["ok"] and report["tokenizer_fingerprint"] == load_tokenizer(str(bpe)).fingerprint
    assert read_rows(final)[0]["tokenizer_fingerprint"] != load_tokenizer("smollm2").fingerprint


def test_verify_reports_coverage_and_catches_broken_items(dataset: dict[str, Path], tmp_path: Path) -> None:
    rep = tmp_path / "v.json"
    r = ks_here("contextual", "verify", "--in", dataset["final"], "--report", rep)
    assert r.returncode == 0, r.stderr
    assert "strata covered" in r.stdout and "scenario" in r.stdout
    cov = json.loads(rep.read_text())["coverage"]
    assert sum(cov["locale"].values()) == 240
    rows = read_rows(dataset["final"])
    tampered = next(i for i, it in enumerate(rows) if i and it["metadata"]["integration_spans_bytes"])
    rows[tampered]["metadata"]["integration_spans_bytes"][0][0] += 1
    rows[tampered + 1]["prompt"] = rows[tampered + 1]["prompt"].replace("CAWS/1", "CAWS/0", 1)
    call_item = next(i for i, it in enumerate(rows) if i > tampered + 1 and it["metadata"]["call_sequence"])
    rows[call_item]["teacher_text"] += "\nContact me at leak@example.com"
    bad = write_rows(dataset["dir"] / "tampered.jsonl", rows)  # beside its fixture folder
    r = ks("contextual", "verify", "--in", bad, "--report", rep)
    assert r.returncode == 1
    problems = json.loads(rep.read_text())["problems"]
    assert problems["span_offsets"] >= 1 and problems["caws_header"] == 1 and problems["privacy"] == 1
