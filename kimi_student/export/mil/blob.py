"""The MIL weight blob file (``weight.bin``) and its reader."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kimi_student.export.errors import CorruptPackageError
from kimi_student.export.mil.dtypes import DType, dtype_by_name, unpack_bits

# Blob storage format (coremltools MILBlob StorageFormat.hpp): BlobDataType enum values.
_BLOB_DTYPES: dict[int, str] = {
    1: "fp16",
    2: "fp32",
    3: "uint8",
    4: "int8",
    5: "bf16",
    6: "int16",
    7: "uint16",
    8: "int4",
    9: "uint1",
    10: "uint2",
    11: "uint4",
    12: "uint3",
    13: "uint6",
    14: "int32",
    15: "uint32",
    16: "fp8e4m3fn",
    17: "fp8e5m2",
}
_BLOB_SENTINEL = 0xDEADBEEF
_HEADER = struct.Struct("<II")  # count, version; the 64-byte header is padded with reserved fields
_METADATA = struct.Struct("<IIQQQ")  # sentinel, dtype, size in bytes, data offset, padding bits
_HEADER_SIZE = 64
_METADATA_SIZE = 64


class BlobFile:
    """Reader for the MIL weight blob: a 64-byte header, then 64-byte metadata records
    (sentinel 0xDEADBEEF, data type, size, data offset) each pointing at 64-byte aligned data.

    Our own reader rather than coremltools.libmilstoragepython: it needs no native library, and a
    truncated or overwritten file gives an error naming the file and offset instead of a crash."""

    def __init__(self, path: Path):
        self.path = path
        try:
            size = path.stat().st_size
            # Memory-mapped: blobs are copied out one by one, the file is never held twice.
            self.data = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        except (OSError, ValueError) as e:
            raise CorruptPackageError(path, f"cannot read weight file ({e})") from e
        if self.data.size < _HEADER_SIZE:
            raise CorruptPackageError(
                path, f"weight file is truncated ({self.data.size} bytes, header needs 64)"
            )
        self.count, self.version = _HEADER.unpack_from(self.data, 0)
        if self.version not in (1, 2):
            raise CorruptPackageError(path, f"unknown weight file version {self.version} (expected 2)")

    def read(self, offset: int, dt: DType, shape: tuple[int, ...]) -> np.ndarray:
        where = f"blob at offset {offset}"
        if offset + _METADATA_SIZE > self.data.size:
            raise CorruptPackageError(
                self.path, f"{where}: metadata lies beyond the end of the file (truncated?)"
            )
        sentinel, code, size, data_offset, padding_bits = _METADATA.unpack_from(self.data, offset)
        if sentinel != _BLOB_SENTINEL:
            raise CorruptPackageError(
                self.path, f"{where}: bad sentinel 0x{sentinel:08x} (expected 0xdeadbeef)"
            )
        blob_name = _BLOB_DTYPES.get(code, f"code {code}")
        if blob_name != dt.name:
            raise CorruptPackageError(
                self.path, f"{where}: holds {blob_name} data but the program declares {dt.name}"
            )
        if data_offset + size > self.data.size:
            raise CorruptPackageError(
                self.path,
                f"{where}: data [{data_offset}, {data_offset + size}) lies beyond the end of the file "
                f"({self.data.size} bytes; truncated?)",
            )
        raw = self.data[data_offset : data_offset + size]
        count = math.prod(shape)
        if dt.nbits:
            available = (size * 8 - (padding_bits if self.version >= 2 else 0)) // dt.nbits
            if available < count:
                raise CorruptPackageError(self.path, f"{where}: {available} values stored, {count} declared")
            return unpack_bits(raw, dt.nbits, count, signed=dt.name.startswith("int")).reshape(shape)
        src = np.dtype(np.float16) if dt.name == "fp16" else dt.storage
        if size != count * src.itemsize:
            raise CorruptPackageError(
                self.path, f"{where}: {size} bytes stored, {count * src.itemsize} declared"
            )
        return raw.view(src).reshape(shape).copy()  # a copy: cached weights must not pin the file buffer


def read_blob(path: str | Path, offset: int, dtype: str, shape: Sequence[int]) -> np.ndarray:
    """Read one blob from a MIL weight file (``weight.bin``); fp16 comes back as float16."""
    dt = dtype_by_name(dtype)
    return BlobFile(Path(path)).read(offset, dt, tuple(int(s) for s in shape))
