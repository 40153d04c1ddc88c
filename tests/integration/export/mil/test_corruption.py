"""Packages the executor refuses: an op it lacks, and corrupt or missing files, each named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

ct = pytest.importorskip("coremltools")

from kimi_student.errors import KimiStudentError  # noqa: E402
from kimi_student.export.mil import SUPPORTED_OPS, CorruptPackageError, MilProgram, UnsupportedOpError  # noqa: E402
from tests.integration.export.mil.conversion import CONVERTER_CHATTER, convert  # noqa: E402
from tests.integration.export.mil.models import Upsample  # noqa: E402

pytestmark = [*CONVERTER_CHATTER, pytest.mark.slow]


def test_unsupported_op_is_named(pkgdir: Path) -> None:
    path = pkgdir / "upsample.mlpackage"
    convert(Upsample(), (torch.zeros(1, 2, 3, 3),), path, [ct.TensorType(name="x", shape=(1, 2, 3, 3))])
    with pytest.raises(UnsupportedOpError) as info:
        MilProgram.load(path)
    (op_type,) = info.value.op_types
    assert op_type not in SUPPORTED_OPS and "upsample" in op_type
    assert op_type in str(info.value) and isinstance(info.value, KimiStudentError)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_corrupt_packages_name_the_file(fp16_pkg: Path, tmp_path: Path) -> None:
    spec = Path("Data/com.apple.CoreML/model.mlmodel")
    weights = Path("Data/com.apple.CoreML/weights/weight.bin")

    pkg = _copy(fp16_pkg, tmp_path / "no_spec.mlpackage")
    (pkg / spec).unlink()
    with pytest.raises(CorruptPackageError, match=r"model\.mlmodel: model specification is missing"):
        MilProgram.load(pkg)

    for i, cut in enumerate((0.5, 0.9)):
        pkg = _copy(fp16_pkg, tmp_path / f"cut_spec{i}.mlpackage")
        data = (pkg / spec).read_bytes()
        (pkg / spec).write_bytes(data[: int(len(data) * cut)])
        with pytest.raises(CorruptPackageError, match=r"model\.mlmodel") as info:
            MilProgram.load(pkg)
        assert info.value.path == pkg / spec

    pkg = _copy(fp16_pkg, tmp_path / "garbage_spec.mlpackage")
    (pkg / spec).write_bytes(b"\xff" * 100)
    with pytest.raises(CorruptPackageError, match=r"model\.mlmodel"):
        MilProgram.load(pkg)

    pkg = _copy(fp16_pkg, tmp_path / "no_weights.mlpackage")
    (pkg / weights).unlink()
    with pytest.raises(CorruptPackageError, match=r"weight\.bin: weight file is missing"):
        MilProgram.load(pkg)

    pkg = _copy(fp16_pkg, tmp_path / "cut_weights.mlpackage")
    data = (pkg / weights).read_bytes()
    (pkg / weights).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptPackageError, match=r"weight\.bin: blob at offset \d+: .*truncated") as info:
        MilProgram.load(pkg)
    assert info.value.path == pkg / weights

    pkg = _copy(fp16_pkg, tmp_path / "bad_sentinel.mlpackage")
    data = bytearray((pkg / weights).read_bytes())
    data[64:68] = b"\0\0\0\0"  # the first blob's metadata record
    (pkg / weights).write_bytes(bytes(data))
    with pytest.raises(CorruptPackageError, match=r"weight\.bin: blob at offset 64: bad sentinel"):
        MilProgram.load(pkg)

    pkg = _copy(fp16_pkg, tmp_path / "no_manifest.mlpackage")
    (pkg / "Manifest.json").unlink()
    with pytest.raises(CorruptPackageError, match=r"Manifest\.json"):
        MilProgram.load(pkg)
