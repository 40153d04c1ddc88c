"""Student checkpoint -> `torch.export` ExportedPrograms (.pt2), one per enumerated shape plus the decoder.

Every program is exported with static shapes and passed through `run_decompositions({})` (core ATen
ops, functionalised: in-place cache writes become buffer mutations in the graph signature), which is
the form coremltools converts. The manifest records each file's sha256 so a consumer can tell a
tampered or truncated file from the one written here.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.export import ExportedProgram

from kimi_student.export.errors import CorruptArtifactError, ExportError
from kimi_student.fingerprint import sha256_file, weights_sha256
from kimi_student.manifest import MANIFEST, read_manifest, write_manifest
from kimi_student.models.ane import AneLlama, AneLlamaDecoder, Layout, LlamaArch, load_ane_llama, read_config
from kimi_student.outputs import artifacts_writer

MAX_SHAPES = 16  # enumerated lengths of one export: each is a program of its own


def parse_shapes(text: str, flag: str = "--shapes") -> list[int]:
    """'512,1024,2048' -> [512, 1024, 2048] (sorted, unique, positive)."""
    try:
        shapes = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise ExportError(f"{flag} {text!r}: expected comma-separated integers, e.g. 512,1024,2048") from None
    if not shapes or shapes[0] < 1:
        raise ExportError(f"{flag} {text!r}: expected positive lengths")
    if len(shapes) > MAX_SHAPES:
        raise ExportError(f"{flag}: {len(shapes)} lengths, at most {MAX_SHAPES} (one program each)")
    return shapes


def check_lengths(folder: str | Path, shapes: list[int], context: int | None = None) -> None:
    """Every shape (and the decode context) within the checkpoint's max_position_embeddings, read from its
    config.json alone: the RoPE tables and masks are sized by the largest, so `--shapes 100000000` used to
    exhaust memory before this was checked."""
    limit = LlamaArch.from_hf(read_config(folder), Path(folder) / "config.json").max_position_embeddings
    largest = max([*shapes, context or 0])
    if largest > limit:
        raise ExportError(
            f"shape {largest} exceeds the checkpoint's max_position_embeddings {limit} ({folder})"
        )


def load_for_export(
    folder: str | Path, shapes: list[int], layout: Layout = "bsc", context: int | None = None
) -> AneLlama:
    """The ANE model with tables sized for the largest shape or decode context, in fp32 eval mode."""
    check_lengths(folder, shapes, context)
    return load_ane_llama(folder, max_seq=max([*shapes, context or 0]), layout=layout)


@contextlib.contextmanager
def _no_pytree_warning() -> Iterator[None]:
    # torch 2.13 warns about its own deprecated LeafSpec from inside torch.export; nothing here to act on
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        yield


def export_program(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> ExportedProgram:
    """Static-shape export, decomposed to core ATen and functionalised: the form coremltools converts."""
    with torch.no_grad(), _no_pytree_warning():
        return torch.export.export(module, args).run_decompositions({})


def export_full(model: AneLlama, seq_len: int) -> ExportedProgram:
    """input_ids (1, seq_len) int32 -> logits (1, seq_len, V)."""
    return export_program(model, (torch.zeros(1, seq_len, dtype=torch.int32),))


def export_decoder(decoder: AneLlamaDecoder) -> ExportedProgram:
    """(input_ids (1, Q) int32, position (1,) int32) -> logits (1, Q, V) (and the hidden states, or a feature
    drafter's call: AneFeatureDrafter); k_cache, v_cache mutated."""
    ep = export_program(decoder, decoder.example_args())
    mutated = set(ep.graph_signature.buffers_to_mutate.values())
    if mutated != {"k_cache", "v_cache"}:  # the caches must stay buffers, or Core ML gets no state
        raise ExportError(f"decoder export mutates {sorted(mutated)}, expected k_cache and v_cache")
    return ep


def program_name(kind: str, n: int) -> str:
    return f"seq{n}" if kind == "full" else f"decode{n}"


def export_pytorch(
    folder: str | Path,
    out: str | Path,
    shapes: list[int],
    layout: Layout = "bsc",
    context: int | None = None,
) -> dict[str, Any]:
    """Write seq<S>.pt2 for every shape and decode<context>.pt2, plus manifest.json; returns the manifest. A
    kill leaves no half-written program in `out` (`outputs.artifacts_writer`)."""
    with artifacts_writer(Path(out), MANIFEST) as stage:
        return _export_pytorch(folder, stage, shapes, layout, context)


def _export_pytorch(
    folder: str | Path, out: Path, shapes: list[int], layout: Layout, context: int | None
) -> dict[str, Any]:
    context = context or max(shapes)
    model = load_for_export(folder, shapes, layout, context)
    entries = []
    jobs: list[tuple[str, int]] = [("full", s) for s in shapes] + [("decode", context)]
    for kind, n in jobs:
        t0 = time.perf_counter()
        ep = export_full(model, n) if kind == "full" else export_decoder(AneLlamaDecoder(model, n))
        path = out / f"{program_name(kind, n)}.pt2"
        with _no_pytree_warning():
            torch.export.save(ep, path)
        entries.append(
            {
                "file": path.name,
                "kind": kind,
                ("seq_len" if kind == "full" else "context"): n,
                "inputs": {
                    "input_ids": [1, n if kind == "full" else 1],
                    **({"position": [1]} if kind == "decode" else {}),
                },
                "mutated_buffers": sorted(ep.graph_signature.buffers_to_mutate.values()),
                "ops": sorted({str(nd.target) for nd in ep.graph.nodes if nd.op == "call_function"}),
                "export_seconds": round(time.perf_counter() - t0, 3),
                "size_bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        )
    manifest = {
        "format": "torch.export",
        "manifest_version": 1,
        "torch_version": torch.__version__,
        "checkpoint": str(folder),
        "checkpoint_sha256": weights_sha256(folder),
        "layout": layout,
        "arch": model.arch.__dict__,
        "programs": entries,
    }
    write_manifest(out / MANIFEST, manifest)
    return manifest


def load_program(path: str | Path, manifest: dict[str, Any] | None = None) -> ExportedProgram:
    """Load a .pt2, checking its sha256 against the manifest beside it (or the one given) first."""
    path = Path(path)
    manifest = manifest or read_manifest(path.parent / MANIFEST)
    entry = next((e for e in manifest.get("programs", []) if e["file"] == path.name), None)
    if entry is None:
        raise CorruptArtifactError(path, "not listed in the manifest")
    if not path.is_file():
        raise CorruptArtifactError(path, "missing")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise CorruptArtifactError(
            path, f"sha256 {digest[:12]}… differs from the manifest's {entry['sha256'][:12]}…"
        )
    try:
        with _no_pytree_warning():
            return torch.export.load(path)
    except Exception as e:  # a file that matches its digest but does not load is still this file's fault
        raise CorruptArtifactError(path, f"cannot load ExportedProgram: {type(e).__name__}: {e}") from None
