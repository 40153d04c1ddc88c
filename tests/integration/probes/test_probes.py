"""`kimi-student probes` through the CLI on two toy students (random weights, seeds 0 and 1, the SmolLM2
vocabulary) and the session's contextual dataset: a per-layer table and plot, the baseline the report's own
counts give, probes that beat it, and a rerun that reads the cached states and writes the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import ks_here

pytestmark = [pytest.mark.slow]


def test_probes_write_a_table_a_plot_and_the_same_bytes_again(
    dataset: dict[str, Path], toy_checkpoint: Path, tmp_path: Path
) -> None:
    from kimi_student.backends.embedded import smollm2_folder
    from kimi_student.models.student import build_student, load_spec, save_checkpoint

    other = save_checkpoint(
        build_student(load_spec("worker", "toy"), seed=1), smollm2_folder(), tmp_path / "s1"
    )
    out = tmp_path / "probes"
    args = (
        "probes",
        "--model",
        toy_checkpoint,
        "--model",
        other,
        "--data",
        dataset["final"],
        "--items",
        "30",
    )
    r = ks_here(*args, "--out", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    h, c, b = rep["header"], rep["counts"], rep["baseline"]
    assert (h["examples"], h["heldout_examples"]) == (30, 9) and len(rep["models"]) == 2
    assert (
        sum(c["step_train"].values()) == c["train_tokens"]
        and sum(c["step_heldout"].values()) == c["heldout_tokens"]
    )
    # the baseline: the training tokens' most frequent step, scored on the held-out tokens
    top = max(c["step_train"], key=c["step_train"].get)
    assert b["step"]["accuracy"] == pytest.approx(c["step_heldout"][top] / c["heldout_tokens"])
    assert b["step"]["macro_f1"] < 0.3 and len(h["tools"]) >= 5
    for m in rep["models"]:
        assert [r["layer"] for r in m["layers"]] == [0, 1, 2]  # the embeddings and both layers
        best = m["best"]
        assert best["step"]["macro_f1"] > b["step"]["macro_f1"] + 0.3, best
        assert best["tool"]["macro_f1"] > b["tool"]["macro_f1"] + 0.15, best  # random weights: ~0.32 vs 0.09
        assert best["step"]["macro_f1"] == max(r["step"]["macro_f1"] for r in m["layers"])
    table = (out / "table.md").read_text().splitlines()
    assert len(table) == 3 + 2 * 3 and table[2].startswith("| majority class |")
    png = (out / "probes.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    cached = {p: p.stat().st_mtime_ns for p in (out / "cache").iterdir()}
    assert len(cached) == 2
    before = {n: (out / n).read_bytes() for n in ("report.json", "table.md", "probes.png")}
    assert ks_here(*args, "--out", out).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").iterdir()} == cached  # read, not remade
    assert {n: (out / n).read_bytes() for n in before} == before
