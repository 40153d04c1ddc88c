"""`kimi-student worker-e2e` for real at a tiny size (slow tier, ~1-2 min on 2 cores): dataset -> BPE on
the conversations -> a trained student -> `eval --runner hf_local` through the tool loop -> every CAWS
gate. The tiny student fails the gates (exit 1); what is checked is that every gate was computed on the
trained model's own output, and that the eval's report is the same one `kimi-student eval` writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kimi_student.eval.gates import DEFAULT_GATES, load_gates
from kimi_student.recipes.worker_e2e import CONFIG
from tests.support import ks, read_rows

pytestmark = [pytest.mark.slow]


def read_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()[1:]]


def tiny_config(folder: Path) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"].update(train_items=300, heldout_items=24, bpe_vocab=512)
    cfg["decode"].update(max_turns=2, max_new_tokens=24, batch_size=8)
    cfg["train"].update(max_steps=12, batch_size=2, warmup_steps=2, seq_curriculum=[{"seq_len": 512}])
    arch = cfg["sizes"]["worker"]["arch"]
    arch.update(hidden_size=64, intermediate_size=128, num_hidden_layers=1, max_position_embeddings=512)
    path = folder / "worker_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_worker_e2e_computes_every_gate_on_the_students_output(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = ks("worker-e2e", "--out", out, "--config", tiny_config(tmp_path), env={"OPENBLAS_NUM_THREADS": "1"})
    assert r.returncode in (0, 1), r.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    evr = json.loads((out / "eval_report.json").read_text())
    assert evr["header"]["runner"] == "hf_local" and rep["gates"] == evr["gates"]
    assert set(load_gates(DEFAULT_GATES)) <= set(rep["gates"])  # every configured gate, computed
    assert rep["train"]["steps"] == 12 and rep["data"]["heldout_items"] == 24
    # held-out items are the generator's heldout split, checked disjoint from training and its copies
    assert rep["data"]["heldout_split"] == "heldout"
    assert rep["data"]["disjoint"]["pass"] and rep["data"]["disjoint"]["leaks"] == 0
    assert rep["data"]["disjoint"]["atoms_checked"] > 50
    assert 0 < rep["data"]["train_copy_augmented"] <= 300
    assert len(read_ids(out / "data" / "train.jsonl")) == 300 + rep["data"]["train_copy_augmented"]
    assert all(i.startswith("ctx-heldout-") for i in read_ids(out / "data" / "heldout.jsonl"))
    assert (r.returncode == 0) == rep["passed"]
    rows = read_rows(out / "eval_results.jsonl")
    assert len(rows) == 24
    # the outputs are the student's, through the loop: not the gold text
    gold = {
        json.loads(line)["id"]: json.loads(line).get("teacher_text")
        for line in (out / "data" / "heldout.jsonl").read_text().splitlines()[1:]
    }
    assert sum(row["output"] != gold[row["id"]] for row in rows) > 0
