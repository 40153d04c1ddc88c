"""ONNX export of the full-sequence student, for debugging: onnxruntime runs it on any machine, so it is a
second, independent implementation to compare the PyTorch module against (Core ML cannot run on Linux).

Each file is exported through the dynamo-based `torch.onnx.export` and checked at once: onnxruntime's
logits against the module's on seeded random tokens; the max abs diff goes into the manifest.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kimi_student.export.errors import CorruptArtifactError, ExportError
from kimi_student.export.torch_export import load_for_export
from kimi_student.fingerprint import sha256_file, weights_sha256
from kimi_student.manifest import MANIFEST, write_manifest
from kimi_student.models.ane import AneLlama, Layout
from kimi_student.outputs import artifacts_writer

OPSET = 20
TOLERANCE = 1e-3  # fp32 on both sides; real disagreements are orders of magnitude larger


def export_one(model: AneLlama, seq_len: int, path: Path) -> None:
    ids = torch.zeros(1, seq_len, dtype=torch.int32)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            model,
            (ids,),
            input_names=["input_ids"],
            output_names=["logits"],
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
        prog.save(str(path))


def ort_logits(path: str | Path, input_ids: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf types
        raise CorruptArtifactError(path, f"onnxruntime cannot load it: {e}") from None
    return sess.run(["logits"], {"input_ids": input_ids.astype(np.int32)})[0]


def parity(model: AneLlama, path: str | Path, seq_len: int, seed: int = 0) -> float:
    """Max abs diff between onnxruntime's logits and the module's, on seeded random token ids."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.arch.vocab_size, (1, seq_len), generator=g, dtype=torch.int32)
    with torch.no_grad():
        ref = model(ids).numpy()
    return float(np.abs(ort_logits(path, ids.numpy()) - ref).max())


def export_onnx(
    folder: str | Path,
    out: str | Path,
    shapes: list[int],
    layout: Layout = "bsc",
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Write seq<S>.onnx per shape and manifest.json (with parity per file), published whole
    (`outputs.artifacts_writer`); raise if a file disagrees (the files stay, to be looked at)."""
    out = Path(out)
    with artifacts_writer(out, MANIFEST) as stage:
        manifest = _export_onnx(folder, stage, shapes, layout, tolerance)
    bad = [e for e in manifest["files"] if not e["parity_max_abs_diff"] <= tolerance]  # `not <=`: NaN too
    if bad:
        e = bad[0]
        raise ExportError(
            f"{out / e['file']}: onnxruntime differs from PyTorch by {e['parity_max_abs_diff']:.3g} "
            f"(tolerance {tolerance:g})"
        )
    return manifest


def _export_onnx(
    folder: str | Path, out: Path, shapes: list[int], layout: Layout, tolerance: float
) -> dict[str, Any]:
    import onnx

    model = load_for_export(folder, shapes, layout)
    entries = []
    for s in shapes:
        path = out / f"seq{s}.onnx"
        t0 = time.perf_counter()
        export_one(model, s, path)
        t1 = time.perf_counter()
        diff = parity(model, path, s)
        ops = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
        entries.append(
            {
                "file": path.name,
                "seq_len": s,
                "export_seconds": round(t1 - t0, 3),
                "parity_max_abs_diff": diff,
                "op_histogram": dict(sorted(ops.items())),
                "size_bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        )
    manifest = {
        "format": "onnx",
        "manifest_version": 1,
        "opset": OPSET,
        "checkpoint": str(folder),
        "checkpoint_sha256": weights_sha256(folder),
        "layout": layout,
        "parity_tolerance": tolerance,
        "files": entries,
    }
    write_manifest(out / MANIFEST, manifest)
    return manifest
