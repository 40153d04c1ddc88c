"""Gate configs through the real CLI (review D15): one that cannot be applied stops `eval` and `eval merge`
with one line and exit 2 before anything is written (no results, report or parts folder), and a run whose
items all errored never passes."""

from __future__ import annotations

from pathlib import Path

from tests.support import ks, ks_here

ABC = 'gates:\n  integration_f1_lax: {op: ">=", threshold: 0.9,\n     min_items: abc}\n'
CASES = [
    ("gates: {}\n", ":1: gates: needs at least one gate (name: {op, threshold})"),
    (
        "- integration_f1_lax\n- privacy_ok_rate\n",
        ":1: gates: a gate config is a mapping with `gates:`, not a list",
    ),
    (ABC, ":3: gates.integration_f1_lax.min_items: 'abc' is not a whole number of items"),
]


def test_a_bad_gate_config_stops_eval_and_merge_before_any_output(dataset: dict[str, Path], tmp_path: Path):
    empty = tmp_path / "empty.jsonl"  # no predictions: every item is an error
    empty.write_text("")
    out, rep = tmp_path / "r.jsonl", tmp_path / "r.json"
    for k, (text, expected) in enumerate(CASES):
        gates = tmp_path / f"g{k}.yaml"
        gates.write_text(text)
        for args in (
            ("eval", "--runner", "predictions", "--predictions", empty, "--in", dataset["final"]),
            ("eval", "merge", tmp_path / "no-such-shard.jsonl"),
        ):
            r = (ks if k == 0 else ks_here)(*args, "--gates", gates, "--out", out, "--report", rep)
            assert r.returncode == 2, (r.stdout, r.stderr)
            assert r.stderr.strip() == f"error: {gates}{expected}", r.stderr
        assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".yaml") == ["empty.jsonl"]

    good = tmp_path / "g.yaml"
    good.write_text('gates:\n  control_integration: {op: "==", threshold: 0, severity: hard}\n')
    r = ks("eval", "--runner", "predictions", "--predictions", empty, "--in", dataset["final"], "--gates", good,
           "--out", out, "--report", rep)  # fmt: skip
    assert r.returncode == 1 and "FAIL" in r.stdout, r.stderr  # 240 errors: no gate could pass
