"""A non-editable install works: the wheel carries the configs and the base fixtures as package data, and
the library and the CLI find them from a working directory that is not the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kimi_student.tools.broker import DEFAULT_FIXTURES, fixtures_sha256
from tests.support import ROOT

# Loads everything the package reads from its own files; prints where kimi_student came from.
PROBE = """
import json, kimi_student
from kimi_student.eval.gates import DEFAULT_GATES, load_gates
from kimi_student.models.student import load_spec
from kimi_student.privacy import url_allowlist
from kimi_student.tools.broker import DEFAULT_FIXTURES, fixtures_sha256, load_fixtures
print(json.dumps({
    "file": kimi_student.__file__,
    "gates": sorted(load_gates()),
    "gates_file": str(DEFAULT_GATES),
    "allowlist": len(url_allowlist()),
    "worker_layers": load_spec("worker", "toy").arch["num_hidden_layers"],
    "fixtures": len(load_fixtures([DEFAULT_FIXTURES])),
    "fixtures_dir": str(DEFAULT_FIXTURES),
    "fixtures_sha256": fixtures_sha256([DEFAULT_FIXTURES]),
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel built from a copy of the sources, installed with --target (no editable finder, no .pth)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # a copy: building in place would leave build/ and *.egg-info in the checkout
    shutil.copytree(ROOT / "kimi_student", src / "kimi_student", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    offline = {**os.environ, "PIP_NO_INDEX": "1"}

    def pip_run(*args: str | Path) -> None:
        r = subprocess.run([*pip, *map(str, args)], capture_output=True, text=True, env=offline, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr

    pip_run("wheel", "--no-deps", "--no-build-isolation", src, "-w", tmp / "wheel")
    (wheel,) = (tmp / "wheel").glob("kimi_student-*.whl")
    pip_run("install", "--no-deps", "--target", tmp / "site", wheel)
    cwd = tmp / "cwd"
    cwd.mkdir()
    return {"site": tmp / "site", "cwd": cwd}


def run(installed: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    """The venv's interpreter (it has the dependencies) with only the installed copy on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(installed["site"]), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=installed["cwd"], env=env, timeout=600
    )


@pytest.mark.slow
def test_wheel_ships_the_configs_and_base_fixtures(installed: dict[str, Path]) -> None:
    r = run(installed, "-c", PROBE)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    site = installed["site"].resolve()
    assert Path(got["file"]).resolve() == site / "kimi_student" / "__init__.py", got[
        "file"
    ]  # not the checkout
    assert Path(got["gates_file"]).is_relative_to(site) and Path(got["fixtures_dir"]).is_relative_to(site)
    assert "fixture_hit_rate" in got["gates"] and got["allowlist"] > 0 and got["worker_layers"] > 0
    assert got["fixtures"] > 0
    assert got["fixtures_sha256"] == fixtures_sha256([DEFAULT_FIXTURES])  # the same bytes as the checkout's


@pytest.mark.slow
def test_installed_cli_runs_from_any_directory(installed: dict[str, Path]) -> None:
    r = run(installed, "-m", "kimi_student", "tools", "list")
    assert r.returncode == 0 and "web.search" in r.stdout, r.stderr
    for args in (
        ("contextual", "gen", "--n", "24", "--seed", "1", "--out", "d/c.jsonl"),
        ("contextual", "extract", "--in", "d/c.jsonl", "--out", "d/f.jsonl", "--tokenizer", "smollm2"),
        # default --gates: the packaged file (no configs/ in this working directory)
        (
            "eval",
            "--runner",
            "verification_only",
            "--in",
            "d/f.jsonl",
            "--out",
            "r.jsonl",
            "--report",
            "r.json",
        ),
    ):
        r = run(installed, "-m", "kimi_student", *args)
        assert r.returncode == 0, r.stdout + r.stderr
    assert not (installed["cwd"] / "configs").exists()
    report = json.loads((installed["cwd"] / "r.json").read_text())
    assert report["passed"] is True
    dataset_fixtures = installed["cwd"] / "d" / "c.jsonl.fixtures"
    assert report["header"]["fixtures_sha256"] == fixtures_sha256([dataset_fixtures, DEFAULT_FIXTURES])
