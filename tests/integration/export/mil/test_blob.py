"""The weight blob reader against coremltools' C++ reader and writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")

from kimi_student.export.mil import CorruptPackageError, read_blob  # noqa: E402
from tests.integration.export.mil.conversion import CONVERTER_CHATTER  # noqa: E402

pytestmark = CONVERTER_CHATTER


@pytest.mark.slow
def test_blob_reader_agrees_with_coremltools(fp16_pkg: Path, pkgdir: Path) -> None:
    storage = pytest.importorskip("coremltools.libmilstoragepython")
    from coremltools.proto import MIL_pb2

    spec = ct.utils.load_spec(str(fp16_pkg))
    weights = fp16_pkg / "Data/com.apple.CoreML/weights/weight.bin"
    reader = storage._BlobStorageReader(str(weights))
    seen = 0
    for op in spec.mlProgram.functions["main"].block_specializations["CoreML8"].operations:
        val = op.attributes["val"] if op.type == "const" else None
        if val is None or val.WhichOneof("value") != "blobFileValue":
            continue
        tt = val.type.tensorType
        shape = [d.constant.size for d in tt.dimensions]
        assert tt.dataType == MIL_pb2.FLOAT16
        ours = read_blob(weights, val.blobFileValue.offset, "fp16", shape)
        theirs = np.frombuffer(reader.read_fp16_data(val.blobFileValue.offset).tobytes(), np.float16)
        assert ours.dtype == np.float16 and np.array_equal(ours.reshape(-1), theirs)
        seen += 1
    assert seen >= 10


def test_blob_reader_reads_every_dtype_coremltools_writes(tmp_path: Path) -> None:
    """Header, metadata records, padding bits and LSB-first sub-byte packing, via the C++ writer."""
    storage = pytest.importorskip("coremltools.libmilstoragepython")
    rng = np.random.default_rng(5)
    path = tmp_path / "weight.bin"
    writer = storage._BlobStorageWriter(str(path))
    written = []
    for dtype, np_dtype, lo, hi in [
        ("int8", np.int8, -128, 128),
        ("uint8", np.uint8, 0, 256),
        ("int16", np.int16, -(2**15), 2**15),
        ("uint16", np.uint16, 0, 2**16),
        ("int32", np.int32, -(2**31), 2**31),
        ("uint32", np.uint32, 0, 2**32),
        ("int4", np.int8, -8, 8),
        ("uint4", np.uint8, 0, 16),
        ("uint6", np.uint8, 0, 64),
        ("uint3", np.uint8, 0, 8),
        ("uint2", np.uint8, 0, 4),
        ("uint1", np.uint8, 0, 2),
    ]:
        values = rng.integers(lo, hi, size=(3, 7)).astype(np_dtype)  # 21 values: sub-byte padding
        written.append((dtype, values, getattr(writer, f"write_{dtype}_data")(values.reshape(-1))))
    floats = rng.standard_normal((5, 3)).astype(np.float32)
    written.append(("fp32", floats, writer.write_float_data(floats.reshape(-1))))
    halves = floats.astype(np.float16)
    written.append(("fp16", halves, writer.write_fp16_data(halves.reshape(-1).view(np.uint16))))
    del writer  # flushes the file
    for dtype, values, offset in written:
        got = read_blob(path, offset, dtype, values.shape)
        assert got.dtype == values.dtype and np.array_equal(got, values), dtype
    with pytest.raises(CorruptPackageError, match="holds int8 data but the program declares fp16"):
        read_blob(path, written[0][2], "fp16", (3, 7))
