"""Reading an ``.mlpackage``: its manifest, the Model protobuf, and MIL values (immediate or in a
weight blob) decoded into the executor's storage types."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from kimi_student.export.errors import CorruptPackageError, UnsupportedOpError
from kimi_student.export.mil.blob import BlobFile
from kimi_student.export.mil.dtypes import PROTO_DTYPE_NAMES, PROTO_DTYPES, to_storage, unpack_bits
from kimi_student.export.mil.steps import TensorType


def tensor_type(value_type: Any, where: str, path: Path) -> TensorType | None:
    kind = value_type.WhichOneof("type")
    is_state = False
    if kind == "stateType":
        value_type, is_state = value_type.stateType.wrappedType, True
        kind = value_type.WhichOneof("type")
    if kind != "tensorType":
        return None  # lists / tuples / dicts only appear in control flow we do not run
    tt = value_type.tensorType
    code = int(tt.dataType)
    if code not in PROTO_DTYPES:
        name = PROTO_DTYPE_NAMES.get(code, f"code {code}")
        raise UnsupportedOpError.in_executor([name], f"{path}: {where}", what="dtype")
    dims: list[int | None] = []
    for d in tt.dimensions:
        dims.append(int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None)
    shape = tuple(dims) if tt.rank >= 0 and len(dims) == tt.rank else None
    return TensorType(PROTO_DTYPES[code], shape, is_state)


class Loader:
    def __init__(self, package: Path):
        self.package = package
        self.model_path, self.weights_dir = self._locate()
        self.blobs: dict[Path, BlobFile] = {}
        # The functions of a multifunction package read the same weights: each blob value is read, and
        # each compressed weight expanded (MilProgram), once per loader, and the arrays are shared.
        self.blob_values: dict[tuple[str, int, str, tuple[int, ...]], np.ndarray] = {}
        self.expanded: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = {}

    def _locate(self) -> tuple[Path, Path]:
        manifest = self.package / "Manifest.json"
        if not self.package.is_dir():
            raise CorruptPackageError(self.package, "not an .mlpackage directory")
        try:
            info = json.loads(manifest.read_text(encoding="utf-8"))
            entries = info["itemInfoEntries"]
            root = entries[info["rootModelIdentifier"]]
            model_rel = root["path"]
        except FileNotFoundError:
            raise CorruptPackageError(manifest, "missing (not an .mlpackage?)") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CorruptPackageError(manifest, f"unreadable manifest ({type(e).__name__}: {e})") from None
        model_path = self.package / "Data" / model_rel
        weights_dir = model_path.parent / "weights"
        for entry in entries.values():
            if isinstance(entry, dict) and entry.get("name") == "weights" and "path" in entry:
                weights_dir = self.package / "Data" / entry["path"]
        return model_path, weights_dir

    def parse_model(self) -> Any:
        from coremltools.proto import Model_pb2
        from google.protobuf.message import DecodeError

        try:
            raw = self.model_path.read_bytes()
        except FileNotFoundError:
            raise CorruptPackageError(self.model_path, "model specification is missing") from None
        except OSError as e:
            raise CorruptPackageError(self.model_path, f"cannot read ({e.strerror or e})") from None
        model = Model_pb2.Model()
        try:
            model.ParseFromString(raw)
        except (DecodeError, ValueError, RuntimeError) as e:
            raise CorruptPackageError(self.model_path, f"not a valid Model protobuf ({e})") from None
        if model.WhichOneof("Type") != "mlProgram":
            raise CorruptPackageError(self.model_path, "not an ML program (mlProgram) model")
        return model

    def blob(self, file_name: str) -> BlobFile:
        rel = file_name.split("@model_path/", 1)[-1]
        path = self.model_path.parent / rel
        if not path.exists():
            alt = self.weights_dir / Path(rel).name  # custom weights location in the manifest
            path = alt if alt.exists() else path
        if path not in self.blobs:
            if not path.exists():
                raise CorruptPackageError(path, "weight file is missing")
            self.blobs[path] = BlobFile(path)
        return self.blobs[path]

    def value(self, spec: Any, where: str) -> Any:
        """Decode a MIL Value (immediate or blob) into storage representation."""
        tt = tensor_type(spec.type, where, self.model_path)
        if tt is None:
            raise UnsupportedOpError.in_executor(
                [spec.type.WhichOneof("type")], f"{self.model_path}: {where}", what="value type"
            )
        shape = tuple(0 if d is None else d for d in tt.shape or ())
        dt = tt.dtype
        kind = spec.WhichOneof("value")
        if kind == "blobFileValue":
            key = (spec.blobFileValue.fileName, int(spec.blobFileValue.offset), dt.name, shape)
            if key not in self.blob_values:
                arr = self.blob(key[0]).read(key[1], dt, shape)
                self.blob_values[key] = to_storage(arr, dt)
            return self.blob_values[key]
        if kind != "immediateValue":
            raise CorruptPackageError(self.model_path, f"{where}: value has no data")
        imm = spec.immediateValue
        if imm.WhichOneof("value") != "tensor":
            raise UnsupportedOpError.in_executor(
                [str(imm.WhichOneof("value"))], f"{self.model_path}: {where}", what="immediate value"
            )
        tv = imm.tensor
        field_name = tv.WhichOneof("value")
        count = math.prod(shape)
        if field_name == "bytes":
            raw = bytes(tv.bytes.values)
            if dt.nbits:
                arr = unpack_bits(
                    np.frombuffer(raw, np.uint8), dt.nbits, count, signed=dt.name.startswith("int")
                )
            else:
                src = np.dtype(np.float16) if dt.name == "fp16" else dt.storage
                arr = np.frombuffer(raw, src)
        elif field_name == "strings":
            vals = list(tv.strings.values)
            return vals[0] if shape == () and vals else np.array(vals, dtype=object).reshape(shape)
        elif field_name is None:
            arr = np.zeros(0, dtype=dt.storage)
        else:
            arr = np.asarray(list(getattr(tv, field_name).values))
        if arr.size != count:
            raise CorruptPackageError(self.model_path, f"{where}: {arr.size} values for shape {shape}")
        return to_storage(arr.reshape(shape), dt)
