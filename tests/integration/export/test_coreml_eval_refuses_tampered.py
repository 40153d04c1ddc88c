"""`eval --runner coreml` on a package whose files no longer match its manifest is refused, as `export
verify` refuses it (review reliability.md D18): one line naming the file, exit 2, before anything runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kimi_student.export.errors import CorruptArtifactError
from kimi_student.export.verify import verify_packages
from tests.support import ks_here

pytestmark = [pytest.mark.slow]  # one Core ML conversion (~6 s)


@pytest.fixture(scope="module")
def package_folder(tmp_path_factory: pytest.TempPathFactory, toy_checkpoint: Path) -> Path:
    from kimi_student.export.coreml import export_coreml

    out = tmp_path_factory.mktemp("coreml") / "artifacts"
    export_coreml(toy_checkpoint, out, [64], decode=False)  # what `export coreml` writes (INT8)
    return out


def test_eval_refuses_a_package_that_differs_from_its_manifest(
    package_folder: Path, dataset: dict[str, Path], tmp_path: Path
) -> None:
    verify_packages(sorted(package_folder.glob("seq*.mlpackage")))  # the package as written passes
    bad = tmp_path / "artifacts"
    shutil.copytree(package_folder, bad)
    weight = next(bad.rglob("weight.bin"))
    data = bytearray(weight.read_bytes())
    data[100] ^= 0xFF
    weight.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError):
        verify_packages(sorted(bad.glob("seq*.mlpackage")))
    out, rep = tmp_path / "run" / "o.jsonl", tmp_path / "run" / "r.json"
    r = ks_here("eval", "--runner", "coreml", "--model", bad, "--in", dataset["final"], "--out", out, "--report", rep,
           "--max-new-tokens", "4", "--max-turns", "1")  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(weight) in lines[0] and "differs from the manifest" in lines[0], r.stderr
    assert not out.exists() and not rep.exists()
    assert ks_here("export", "verify", bad).returncode == 2  # the same check
