"""`kimi-student worker-e2e` for real at a tiny size (~35 s on 2 cores): dataset -> a teacher
trained on the gold conversations -> kd-mix --score-gold -> a student made of the teacher's layers,
distilled on the KD mix -> `eval --runner hf_local` through the tool loop -> every CAWS gate -> the student
as Core ML (INT8) -> `eval --runner coreml` (the stateful decoder) and, in the extra tier, `eval --runner
openai_http` (the student behind `transformers serve`) on 3 of the items, beside hf_local on the same 3. The tiny
models (random init, SmolLM2's tokenizer) fail the gates (exit 1); what is checked is that every stage ran
on the previous one's output and every gate was computed on the trained student's own output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kimi_student.eval.gates import DEFAULT_GATES, load_gates
from kimi_student.recipes.worker_e2e import CONFIG
from tests.support import ks_here, read_rows

pytestmark = [pytest.mark.slow]


def read_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()[1:]]


def tiny_config(folder: Path, http_items: int = 3) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"].update(train_items=120, heldout_items=12)
    cfg["kd"].update(items=8, top_k=4)
    cfg["decode"].update(max_turns=2, max_new_tokens=16, batch_size=12)
    cfg["train"].update(warmup_steps=2, batch_size=1, seq_curriculum=[{"seq_len": 256}], precision="no")
    cfg["arch"].update(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
    cfg["arch"].update(max_position_embeddings=1024)
    cfg["sizes"]["teacher"].update(arch={"num_hidden_layers": 2}, init={"kind": "random"})
    cfg["sizes"]["teacher"]["train"]["max_steps"] = 3  # the wiring, not the learning: a step is ~0.6 s
    cfg["sizes"]["worker"]["arch"] = {"num_hidden_layers": 1}
    cfg["sizes"]["worker"]["init"] = {"kind": "layer_subset", "teacher": "@teacher", "layers": [1]}
    cfg["sizes"]["worker"]["train"]["max_steps"] = 3
    # the decoder without chunk functions (~5 s of export each): test_kv_decode runs the coreml runner's
    # decoder with them
    cfg["export"].update(shapes=[512], chunks=[])
    cfg["parity"].update(coreml_items=3, openai_http_items=http_items)
    path = folder / "worker_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# the openai_http leg starts `transformers serve` (~8 s); the runner smoke (test_runners) proves that runner
@pytest.mark.parametrize(
    "legs", [("coreml",), pytest.param(("coreml", "openai_http"), marks=pytest.mark.extra)]
)
def test_worker_e2e_computes_every_gate_on_the_students_output(legs: tuple[str, ...], tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tiny_config(tmp_path, 3 if "openai_http" in legs else 0)
    r = ks_here("worker-e2e", "--out", out, "--config", config)  # the pipeline, in-process
    assert r.returncode in (0, 1), r.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    evr = json.loads((out / "eval_report.json").read_text())
    assert evr["header"]["runner"] == "hf_local" and rep["gates"] == evr["gates"]
    assert set(load_gates(DEFAULT_GATES)) <= set(rep["gates"])  # every configured gate, computed
    assert rep["teacher"]["steps"] == 3 and rep["train"]["steps"] == 3 and rep["data"]["heldout_items"] == 12
    # the student is the teacher's layer 1, distilled on the teacher's scores of 8 training conversations
    assert rep["train"]["init"] == {
        "kind": "layer_subset",
        "teacher": f"hf:{out / 'teacher' / 'final'}",
        "layers": [1],
    }
    assert rep["kd_mix"]["ok"] == rep["kd_mix"]["records"] == 8
    kd = read_rows(out / "data" / "kd_scored.jsonl")[1:]  # after the header
    assert len(kd) == 8 and all(r["kind"] == "teacher_forced" for r in kd)
    log = [json.loads(line) for line in (out / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(row["kl_forward"] > 0 and row["ce_teacher"] > 0 for row in log)
    # held-out items are the generator's heldout split, checked disjoint from training and its copies
    assert rep["data"]["heldout_split"] == "heldout"
    assert rep["data"]["disjoint"]["pass"] and rep["data"]["disjoint"]["leaks"] == 0
    assert rep["data"]["disjoint"]["atoms_checked"] > 25
    # the config's copies: request words swapped for invented ones, beside the 120 generated items
    copies = rep["data"]["train_copy_augmented"]
    ids = read_ids(out / "data" / "train.jsonl")
    assert copies > 60 and len(ids) == 120 + copies and sum("~copy0" in i for i in ids) == copies
    # each copy right after its item, so the 8 items the teacher scored hold copies too
    assert all(i == f"{prev.split('~')[0]}~copy0" for prev, i in zip(ids, ids[1:]) if "~" in i)
    assert any("~copy0" in row["id"] for row in kd)
    assert all(i.startswith("ctx-heldout-") for i in read_ids(out / "data" / "heldout.jsonl"))
    assert (r.returncode == 0) == rep["passed"]
    # exported: INT8 weights, FP16 compute, one package per shape and the stateful decoder; the MIL
    # executor ran 3 held-out items through the decoder
    ex = rep["export"]
    names = [p["name"] for p in ex["packages"]]
    assert names == ["seq512.mlpackage", "decode512.mlpackage"]
    assert ex["precision"] == {"compute": "float16", "weights": "int8"}
    hfs = json.loads((out / "eval_hf_3_report.json").read_text())  # hf_local on the same 3 items, once
    assert hfs["summary"]["items"] == 3
    assert {"coreml", "openai_http"} - set(legs) == {r for r in ("coreml", "openai_http") if rep[r] is None}
    for runner in legs:
        leg = rep[runner]
        other = json.loads((out / f"eval_{runner}_report.json").read_text())
        assert other["header"]["runner"] == runner and leg["gates"] == other["gates"] and leg["items"] == 3
        assert len(read_rows(out / f"eval_{runner}_results.jsonl")) == other["summary"]["items"] == 3
        for k, d in leg["delta_f1"].items():
            assert d == round(abs((other["summary"][k] or 0) - (hfs["summary"][k] or 0)), 6)
        assert leg["parity"] == all(d <= 0.03 for d in leg["delta_f1"].values())
    decoding = json.loads((out / "eval_coreml_report.json").read_text())["header"]["decoding"]
    assert decoding["decoder"] == "stateful" and decoding["q_lens"] == [1]
    ran = [rep[runner] for runner in legs]
    assert rep["passed"] == (evr["passed"] and all(leg["passed"] and leg["parity"] for leg in ran))
    rows = read_rows(out / "eval_results.jsonl")
    assert len(rows) == 12
    # the outputs are the student's, through the loop: not the gold text
    gold = {
        json.loads(line)["id"]: json.loads(line).get("teacher_text")
        for line in (out / "data" / "heldout.jsonl").read_text().splitlines()[1:]
    }
    assert sum(row["output"] != gold[row["id"]] for row in rows) > 0


def test_worker_e2e_until_teacher_stops_with_the_fine_tuned_teacher_and_gates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = ks_here("worker-e2e", "--out", out, "--config", tiny_config(tmp_path, 0), "--until", "teacher")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped after teacher, nothing gated" in r.stdout
    rep = json.loads((out / "report.json").read_text())
    assert rep["stopped_after"] == "teacher" and rep["passed"] is None
    assert rep["teacher"]["steps"] == 3 and rep["data"]["heldout_items"] == 12
    assert set(rep["steps_seconds"]) == {"dataset", "teacher", "total"}
    # the teacher is a checkpoint `drafter data --model` reads; no later stage ran
    assert (out / "teacher" / "final" / "model.safetensors").is_file()
    assert not (out / "data" / "kd_scored.jsonl").exists() and not (out / "run").exists()
    assert not {"kd_mix", "train", "gates"} & set(rep)


def test_worker_e2e_refuses_a_stage_it_does_not_have(tmp_path: Path) -> None:
    r = ks_here("worker-e2e", "--out", tmp_path / "run", "--until", "eval")
    assert r.returncode == 2 and "--until must be one of dataset, teacher, kd-mix, student" in r.stderr
    assert not (tmp_path / "run").exists()
