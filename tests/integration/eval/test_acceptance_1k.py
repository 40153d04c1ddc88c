"""The foundation's contract on 1,000 generated items: gold data scores 1.0 everywhere it must."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import ks


def test_1k_items_verification_only(tmp_path: Path) -> None:
    gen, final, rep, ver = (tmp_path / n for n in ("c.jsonl", "final.jsonl", "rep.json", "verify.json"))
    for args in (
        ("contextual", "gen", "--n", 1000, "--seed", 2026, "--out", gen),
        ("contextual", "extract", "--in", gen, "--out", final),
        ("contextual", "verify", "--in", final, "--report", ver),
        (
            "eval",
            "--runner",
            "verification_only",
            "--in",
            final,
            "--out",
            tmp_path / "r.jsonl",
            "--report",
            rep,
        ),
    ):
        r = ks(*args)
        assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads(rep.read_text())["summary"]
    assert s["items"] == 1000 and s["eligible_items"] > 800
    assert s["integration_f1_lax"] == s["integration_f1_strict"] == 1.0
    assert s["fixture_hit_rate"] == 1.0 and s["token_align_ok_rate"] >= 0.995
    header = json.loads(rep.read_text())["header"]
    assert all(v not in (None, "", "unknown") for v in header.values())
    assert json.loads(ver.read_text())["coverage"]["strata"]["fraction"] == 1.0
