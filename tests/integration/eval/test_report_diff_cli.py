"""`kimi-student report diff` on real reports: `eval --runner predictions` of the gold answers and of the same
answers with the integration sentences of some items cut (a real, lower integration F1), and of another dataset."""

from __future__ import annotations

import json
from pathlib import Path

from kimi_student.chat.transcript import INTEGRATION
from tests.support import ks, ks_here, read_rows

EPOCH = {"SOURCE_DATE_EPOCH": "1790000000"}


def _report(final: Path, outputs: dict[str, str], tmp: Path, name: str) -> Path:
    pred = tmp / f"{name}.pred.jsonl"
    pred.write_text("".join(json.dumps({"id": i, "output": o}) + "\n" for i, o in outputs.items()))
    rep = tmp / f"{name}.json"
    r = ks_here(
        "eval", "--runner", "predictions", "--in", final, "--predictions", pred,
        "--out", tmp / f"{name}.jsonl", "--report", rep, env=EPOCH,
    )  # fmt: skip
    assert rep.exists(), r.stdout + r.stderr
    return rep


def test_report_diff_exits_1_on_a_lowered_f1_0_on_none_and_2_on_another_dataset(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    items = read_rows(dataset["final"])[1:]
    gold = {it["id"]: it["teacher_text"] for it in items}
    answered = [i for i, t in gold.items() if INTEGRATION in t]
    cut = set(answered[: len(answered) // 5])  # a fifth of the answers lose their integration sentences
    worse = {i: t.split(INTEGRATION)[0] if i in cut else t for i, t in gold.items()}
    base = _report(dataset["final"], gold, tmp_path, "base")
    same = _report(dataset["final"], gold, tmp_path, "same")
    new = _report(dataset["final"], worse, tmp_path, "new")
    fb, fn = (json.loads(p.read_text())["summary"]["integration_f1_lax"] for p in (base, new))
    assert fb == 1.0 and fn < 0.9

    r = ks("report", "diff", base, new, "--out", tmp_path / "d.json")
    assert r.returncode == 1, r.stdout + r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("integration_f1_lax "))
    assert row.split()[1:4] == ["1.0000", f"{fn:.4f}", f"{fn - 1:+.4f}"] and row.endswith("regressed")
    assert "gate lost: integration_f1_lax (>= 0.9)" in r.stdout and r.stdout.rstrip().endswith("REGRESSION")
    d = json.loads((tmp_path / "d.json").read_text())
    assert "integration_f1_lax" in d["regressed_metrics"] and d["fingerprint_changes"] == []

    r = ks_here("report", "diff", base, same)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("no regression"), r.stdout + r.stderr
    r = ks_here("report", "diff", new, base)  # the other way round it is an improvement
    assert r.returncode == 0 and "improved" in r.stdout

    # another dataset (the first half of the items): not comparable, unless allowed
    half = dataset["dir"] / "report_diff_half.jsonl"  # beside the dataset: its fixtures are found from there
    lines = dataset["final"].read_text().splitlines(keepends=True)
    half.write_text("".join(lines[: 1 + len(items) // 2]))
    other = _report(half, {it["id"]: it["teacher_text"] for it in read_rows(half)[1:]}, tmp_path, "other")
    r = ks("report", "diff", base, other)
    assert r.returncode == 2 and "not comparable: dataset_sha256 differs" in r.stderr, r.stdout + r.stderr
    r = ks_here("report", "diff", base, other, "--allow-fingerprint-change")
    assert r.returncode == 0 and r.stdout.startswith("fingerprint dataset_sha256: "), r.stdout + r.stderr

    r = ks_here("report", "diff", base, tmp_path / "d.json")  # JSON, but a diff, not a report
    assert r.returncode == 2 and "d.json: header: not a report" in r.stderr, r.stderr
    r = ks_here("report", "diff", base, dataset["final"])  # JSON lines
    assert r.returncode == 2 and "final.jsonl:2: -: not JSON" in r.stderr, r.stderr
