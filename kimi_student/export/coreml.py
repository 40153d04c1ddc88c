"""ExportedProgram -> Core ML ML programs: FP16 compute, INT8 per-channel weights, one package per
enumerated sequence length, and a stateful one-token decoder (KV cache as `ct.StateType`, iOS18).

On Linux coremltools converts, quantizes and saves but cannot predict; what we can check here we do:
every op is supported before converting (the error names the ops), the saved program is re-read and
its op histogram recorded, and every file of every package is hashed into the manifest so a damaged
package is named file by file (`verify_package`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch.export import ExportedProgram

from kimi_student.export.errors import CorruptArtifactError, ExportError, UnsupportedOpError
from kimi_student.export.quant import SCHEMES, WeightScheme, quantized, scheme
from kimi_student.export.torch_export import (
    export_decoder,
    export_full,
    load_for_export,
    program_name,
)
from kimi_student.fingerprint import sha256_file, sha256_json, weights_sha256
from kimi_student.manifest import MANIFEST, write_manifest
from kimi_student.models.ane import AneLlamaDecoder, Layout
from kimi_student.outputs import artifacts_writer

TARGET = "iOS18"  # the stateful decoder needs it; one target for every package keeps one opset
WEIGHTS = (*SCHEMES, "fp16")  # the weight schemes of export/quant.py, or none


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """coremltools prints progress bars and warns that torch 2.13 is untested (expected, see DESIGN §6)."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _no_per_pass_validation() -> Iterator[None]:
    with _quiet():
        from coremltools.converters.mil.mil.program import Program

    full = Program.validate
    Program.validate = lambda self, check_essential_scope=False: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        Program.validate = full  # type: ignore[method-assign]


def convert_validated_once(source: Any, **options: Any) -> Any:
    """`ct.convert`, less the whole-program validation coremltools runs after each of its ~90 passes (~30% of
    a conversion's time: toy export 28 -> 20 s): the finished program gets the same check once (every var
    consumed as recorded, scopes present), as the library's own last validation makes it."""
    ct = _ct()
    with _no_per_pass_validation():
        ml = ct.convert(source, **options)
    ml._mil_program.validate(check_essential_scope=True)
    return ml


def save_multifunction_validated_once(desc: Any, path: Path) -> None:
    """`ct.utils.save_multifunction` (it converts the merged program again), less the same per-pass
    validation (half its time: 1.6 -> 0.8 s for a toy decoder of two functions): the package
    it wrote is read back and validated once, and removed if it fails (the library would not have written it)."""
    with _no_per_pass_validation():
        _ct().utils.save_multifunction(desc, str(path))
    try:
        load_mil(path).validate(check_essential_scope=True)
    except Exception:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _ct() -> Any:
    with _quiet():
        import coremltools as ct
    return ct


def unsupported_ops(ep: ExportedProgram) -> dict[str, list[str]]:
    """Op kinds of the graph that coremltools' torch frontend cannot translate, with the nodes using them."""
    with _quiet():
        from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY
        from coremltools.converters.mil.frontend.torch.utils import sanitize_op_kind

    missing: dict[str, list[str]] = {}
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        try:
            kind = node.target.name()  # e.g. "aten::diff", the spelling the converter looks up
        except AttributeError:
            kind = getattr(node.target, "__name__", str(node.target))
        if _TORCH_OPS_REGISTRY.get_func(kind) is None:
            missing.setdefault(sanitize_op_kind(kind), []).append(node.name)
    return missing


def convert(
    ep: ExportedProgram, kind: str, weights: str = "int8", outputs: tuple[str, ...] = ("logits",)
) -> Any:
    """One ExportedProgram (full or decode: stateful) -> an in-memory MLModel (FP16 compute; `weights` a
    scheme of export/quant.py, or fp16), its outputs named `outputs` in order.

    The quantization runs as the last pass of the conversion's own pipeline: applied afterwards to the
    converted model (`linear_quantize_weights(mlmodel)`), it reloads the program from its protobuf and runs
    the backend passes again, ~40% of an export's time for the same quantized weights and logits."""
    ct = _ct()
    missing = unsupported_ops(ep)
    if missing:
        raise UnsupportedOpError.in_converter("coremltools 9.0", missing)
    specs = {n.name: n.meta["val"] for n in ep.graph.nodes if n.op == "placeholder"}
    user = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    inputs = [
        ct.TensorType(
            name=n,
            shape=tuple(specs[n].shape),
            dtype=np.float32 if specs[n].dtype.is_floating_point else np.int32,
        )
        for n in user
    ]
    states = None
    if kind == "decode":  # fp16 states: Core ML keeps state tensors in fp16 only
        states = [
            ct.StateType(wrapped_type=ct.TensorType(shape=tuple(b.shape), dtype=np.float16), name=name)
            for name, b in ((n, ep.state_dict[n]) for n in ("k_cache", "v_cache"))
        ]
    quantize = weights != "fp16"
    pipeline = ct.PassPipeline.DEFAULT
    if quantize:
        pipeline.append_pass(QUANT_PASS)
        pipeline.set_options(QUANT_PASS, {"config": quant_config(weight_names(ep), scheme(weights))})
    try:
        with _quiet():
            ml = convert_validated_once(
                ep,
                inputs=inputs,
                outputs=[ct.TensorType(name=n) for n in outputs],
                states=states,
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT16,
                minimum_deployment_target=getattr(ct.target, TARGET),
                pass_pipeline=pipeline,
            )
    except NotImplementedError as e:  # a translation that exists but refuses this use of the op
        raise ExportError(f"coremltools cannot convert the {kind} program: {e}") from None
    if quantize:
        ops = [op for f in ml._mil_program.functions.values() for op in f.operations]
        names = set(weight_names(ep))
        left = sorted(op.name for op in ops if op.op_type == "const" and op.name in names)
        if left or not any(op.op_type.startswith("constexpr_") for op in ops):
            raise ExportError(
                f"weight matrices left unquantized: {left or 'all (no p_* parameter matrices found)'}"
            )
    return ml


QUANT_PASS = "compression::linear_quantize_weights"


def weight_names(ep: ExportedProgram) -> list[str]:
    """The const ops the parameter matrices become, as the quantization pass sees them: torch.export's
    placeholders (`p_*`) of rank >= 2 after the FP16 cast (`_to_fp16`). Only these are quantized: the
    coremltools default (every const above 2048 elements) would also quantize the causal mask, whose
    all-zero last row gets scale 0 and turns into NaN, and the RoPE tables."""
    return [
        f"{n.name}_to_fp16"
        for n in ep.graph.nodes
        if n.op == "placeholder" and n.name.startswith("p_") and quantized(n.meta["val"].shape)
    ]


def quant_config(names: list[str], s: WeightScheme) -> Any:
    """The scheme on the named consts, each by `s.of(name)` (a name a program lacks is not used: a tied head
    leaves the embedding's)."""
    from coremltools.optimize.coreml import OptimizationConfig

    return OptimizationConfig(op_name_configs={n: s.of(n).coreml_config() for n in names})


# ---- reading saved packages back -------------------------------------------------------------------------


def load_coreml_spec(package: str | Path) -> Any:
    """The package's protobuf spec; a missing or unparsable package raises CorruptArtifactError naming it."""
    package = Path(package)
    model_file = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    for f in (package / "Manifest.json", model_file):
        if not f.is_file():
            raise CorruptArtifactError(f, "missing from the package")
    ct = _ct()
    spec = ct.proto.Model_pb2.Model()
    try:
        spec.ParseFromString(model_file.read_bytes())
    except Exception as e:  # protobuf's DecodeError: the bytes are not a Core ML model
        raise CorruptArtifactError(model_file, f"not a Core ML model spec: {type(e).__name__}: {e}") from None
    if not spec.HasField("mlProgram"):
        raise CorruptArtifactError(model_file, "not an ML program")
    return spec


def load_mil(package: str | Path) -> Any:
    """The saved ML program as a pymil Program (weights read from weight.bin)."""
    from coremltools.converters.mil.frontend.milproto.load import load

    package = Path(package)
    spec = load_coreml_spec(package)
    weights = package / "Data" / "com.apple.CoreML" / "weights"
    try:
        with _quiet():
            return load(spec, specification_version=spec.specificationVersion, file_weights_dir=str(weights))
    except Exception as e:  # truncated weight.bin, offsets past its end, bad headers
        raise CorruptArtifactError(
            weights / "weight.bin", f"cannot read the weights: {type(e).__name__}: {e}"
        ) from None


def op_histogram(spec: Any) -> dict[str, int]:
    """Count of each MIL op type in the program (nested blocks included), sorted by op type."""
    counts: Counter[str] = Counter()

    def walk(block: Any) -> None:
        for op in block.operations:
            counts[op.type] += 1
            for inner in op.blocks:
                walk(inner)

    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            walk(block)
    return dict(sorted(counts.items()))


def weight_dtypes(package: str | Path) -> dict[str, int]:
    """dtype -> count of the stored (const or quantized) data tensors feeding dequantize ops and matmuls."""
    from coremltools.converters.mil.mil import types  # MIL's own type: numpy holds int4 data as int8

    prog = load_mil(package)
    counts: Counter[str] = Counter()
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type.startswith("constexpr_"):
                counts[types.builtin_to_string(op.data.dtype)] += 1
    return dict(sorted(counts.items()))


def package_files(package: str | Path) -> dict[str, str]:
    """Relative path -> sha256 of every file in the package."""
    package = Path(package)
    return {
        p.relative_to(package).as_posix(): sha256_file(p) for p in sorted(package.rglob("*")) if p.is_file()
    }


def verify_package(package: str | Path, entry: dict[str, Any]) -> None:
    """Raise CorruptArtifactError naming the first file that is missing, extra or differs from the manifest."""
    package = Path(package)
    if not package.is_dir():
        raise CorruptArtifactError(package, "package missing")
    have = package_files(package)
    for rel, digest in entry["files"].items():
        if rel not in have:
            raise CorruptArtifactError(package / rel, "missing from the package")
        if have[rel] != digest:
            raise CorruptArtifactError(
                package / rel, f"sha256 {have[rel][:12]}… differs from the manifest's {digest[:12]}…"
            )
    extra = sorted(set(have) - set(entry["files"]))
    if extra:
        raise CorruptArtifactError(package / extra[0], "not listed in the manifest")
    load_coreml_spec(package)  # and the spec must still parse


def _share(path: Path) -> None:
    """coremltools writes some package files 0600; artifacts are meant to be copied and served."""
    for p in [path, *path.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


DEBUG_MAP = "executorch_debug_handle_mapping.json"  # ExecuTorch's debug handles: no use to Core ML


def settle(package: Path) -> None:
    """The same program gives the same package bytes: coremltools draws Manifest.json's item ids at random and
    writes the spec's maps in hash order (a process's own), so two exports of one checkpoint differed, and so
    did their digests and the coreml runner's model fingerprint. Each id becomes a UUID named by its item's
    path, and the spec is written again with its maps in key order (the same message: Core ML reads either)."""
    man = package / "Manifest.json"
    body = json.loads(man.read_text(encoding="utf-8"))
    items = body["itemInfoEntries"]
    ids = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, f"mlpackage:{items[old]['path']}")) for old in items}
    body["itemInfoEntries"] = {ids[old]: item for old, item in items.items()}
    body["rootModelIdentifier"] = ids[body["rootModelIdentifier"]]
    man.write_text(json.dumps(body, indent=4, sort_keys=True) + "\n", encoding="utf-8")
    spec = load_coreml_spec(package)
    (package / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(
        spec.SerializeToString(deterministic=True)
    )


def save_package(ml: Any, path: Path) -> dict[str, Any]:
    """A package at a new `path` (an export writes in a fresh `artifacts_writer` folder)."""
    with _quiet():
        ml.save(str(path))
    (path / DEBUG_MAP).unlink(missing_ok=True)
    settle(path)
    return describe_package(path)


def save_decoder(parts: dict[int, Any], path: Path) -> dict[str, Any]:
    """One decoder package from programs by query length: Q = 1 alone is saved as it is; with chunk
    functions, a multifunction package (`main` for Q = 1, `chunk<Q>` for the others) whose functions
    share one copy of the weights and the same cache states."""
    if list(parts) == [1]:
        return save_package(parts[1], path)
    ct = _ct()
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        desc = ct.utils.MultiFunctionDescriptor()
        for q, ml in parts.items():
            src = Path(tmp) / f"q{q}.mlpackage"
            with _quiet():
                ml.save(str(src))
            desc.add_function(str(src), "main", decoder_function(q))
        desc.default_function_name = "main"
        with _quiet():
            save_multifunction_validated_once(desc, path)
    settle(path)
    return describe_package(path)


def decoder_function(q_len: int) -> str:
    """The name of the decoder function that takes `q_len` tokens a call."""
    return "main" if q_len == 1 else f"chunk{q_len}"


def describe_package(path: Path) -> dict[str, Any]:
    """What the manifest records of a saved package: op histogram, size, per-file and package sha256."""
    _share(path)
    spec = load_coreml_spec(path)
    files = package_files(path)
    return {
        "name": path.name,
        "op_histogram": op_histogram(spec),
        "size_bytes": sum((path / f).stat().st_size for f in files),
        "sha256": sha256_json(files),  # one digest for the package (file names and contents): `settle`d
        "files": files,
    }


def export_coreml(
    folder: str | Path,
    out: str | Path,
    shapes: list[int],
    *,
    weights: str = "int8",
    layout: Layout = "bsc",
    context: int | None = None,
    decode: bool = True,
    chunks: list[int] | None = None,
    sequence: bool = True,
    drafter: str | Path | None = None,
) -> dict[str, Any]:
    """Write seq<S>.mlpackage per shape (unless not `sequence`: the MIL executor's runner decodes with the
    stateful decoder alone) and decode<context>.mlpackage (with a `chunk<Q>` function per entry of
    `chunks`: prefill and draft verification), plus manifest.json; returns it. With `drafter` (a feature
    drafter's folder, trained for this checkpoint), the decoder also returns its final hidden states and
    drafter<context>.mlpackage holds the drafter, with the same functions and its own cache."""
    if weights not in WEIGHTS:
        raise ExportError(f"weights {weights!r}: choose one of {', '.join(WEIGHTS)}")
    if not (sequence or decode):
        raise ExportError("nothing to export: neither the full-sequence packages nor the decoder")
    context = context or max(shapes)
    chunks = sorted(set(chunks or []))
    if any(not 1 < q <= context for q in chunks):
        raise ExportError(f"chunk lengths {chunks}: each must be between 2 and the context {context}")
    if drafter is not None:
        check_drafter(Path(drafter), folder, decode)
    with artifacts_writer(Path(out), MANIFEST) as stage:  # a kill leaves no half package in `out`
        return _export_coreml(
            folder, stage, shapes, weights, layout, context, decode, chunks, sequence, drafter
        )


def _export_coreml(
    folder: str | Path,
    out: Path,
    shapes: list[int],
    weights: str,
    layout: Layout,
    context: int,
    decode: bool,
    chunks: list[int],
    sequence: bool,
    drafter: str | Path | None,
) -> dict[str, Any]:
    ct = _ct()
    model = load_for_export(folder, shapes, layout, context)
    a = model.arch
    packages = []
    for s in shapes if sequence else []:
        t0 = time.perf_counter()
        ep = export_full(model, s)
        t1 = time.perf_counter()
        ml = convert(ep, "full", weights)
        t2 = time.perf_counter()
        entry = save_package(ml, out / f"{program_name('full', s)}.mlpackage")
        packages.append(
            {
                **entry,
                "kind": "full",
                "seq_len": s,
                "inputs": {"input_ids": [1, s]},
                "outputs": {"logits": [1, s, a.vocab_size]},
                "export_seconds": round(t1 - t0, 3),
                "convert_seconds": round(t2 - t1, 3),
            }
        )
    if decode:
        t0 = time.perf_counter()
        hidden = drafter is not None
        eps = {q: export_decoder(AneLlamaDecoder(model, context, q, hidden)) for q in [1, *chunks]}
        t1 = time.perf_counter()
        outputs = ("logits", "hidden") if hidden else ("logits",)
        parts = {q: convert(ep, "decode", weights, outputs) for q, ep in eps.items()}
        t2 = time.perf_counter()
        entry = save_decoder(parts, out / f"{program_name('decode', context)}.mlpackage")
        cache = list(eps[1].state_dict["k_cache"].shape)
        packages.append(
            {
                **entry,
                "kind": "decode",
                "context": context,
                "functions": {decoder_function(q): q for q in eps},
                "inputs": {"input_ids": [1, 1], "position": [1]},
                "states": {"k_cache": cache, "v_cache": cache},
                "outputs": {"logits": [1, 1, a.vocab_size]}
                | ({"hidden": [1, 1, a.hidden_size]} if hidden else {}),
                "export_seconds": round(t1 - t0, 3),
                "convert_seconds": round(t2 - t1, 3),
            }
        )
    if drafter is not None:
        packages.append(export_drafter(Path(drafter), folder, out, context, [1, *chunks], weights))
    manifest = {
        "format": "coreml-mlprogram",
        "manifest_version": 1,
        "coremltools_version": ct.__version__,
        "checkpoint": str(folder),
        "checkpoint_sha256": weights_sha256(folder),
        "arch": model.arch.__dict__,
        "layout": layout,
        "minimum_deployment_target": TARGET,
        "shapes": shapes if sequence else [],
        "context": context if decode else None,
        "precision": {"compute": "float16", "weights": "float16" if weights == "fp16" else weights},
        "quantization": None
        if weights == "fp16"
        else {**scheme(weights).describe(), "api": f"coremltools pass {QUANT_PASS}"},
        "packages": packages,
    }
    write_manifest(out / MANIFEST, manifest)
    return manifest


def check_drafter(drafter: Path, target: str | Path, decode: bool) -> None:
    """Before any work: a feature drafter's folder, trained for these weights, for a stateful decoder."""
    from kimi_student.models import feature_drafter

    if not decode:
        raise ExportError("a drafter drafts for the stateful decoder: drop --no-decode")
    if not feature_drafter.is_feature_drafter(drafter):
        raise ExportError(
            f"{drafter}: not a feature drafter's folder (`kimi-student drafter train` makes one)"
        )
    if feature_drafter.target_sha256(drafter) != weights_sha256(target):
        raise ExportError(f"{drafter}: trained for other weights than {target}'s")


def export_drafter(
    drafter: Path, target: str | Path, out: Path, context: int, q_lens: list[int], weights: str
) -> dict[str, Any]:
    """drafter<context>.mlpackage: the feature drafter's calls (AneFeatureDrafter) for each query length;
    its manifest entry holds the cut vocabulary's token ids, in the order of its logits."""
    from kimi_student.backends.hf import load_causal_lm
    from kimi_student.models import feature_drafter
    from kimi_student.models.ane import AneFeatureDrafter

    d = feature_drafter.load(drafter, load_causal_lm(Path(target)))
    t0 = time.perf_counter()
    eps = {q: export_decoder(AneFeatureDrafter(d, context, q)) for q in q_lens}
    t1 = time.perf_counter()
    parts = {q: convert(ep, "decode", weights, ("states", "logits")) for q, ep in eps.items()}
    t2 = time.perf_counter()
    entry = save_decoder(parts, out / f"drafter{context}.mlpackage")
    cache = list(eps[1].state_dict["k_cache"].shape)
    c = d.cfg
    return {
        **entry,
        "kind": "drafter",
        "context": context,
        "drafter": str(drafter),
        "drafter_sha256": weights_sha256(drafter),
        "functions": {decoder_function(q): q for q in eps},
        "inputs": {"feats": [1, 1, c.hidden_size], "next_ids": [1, 1], "position": [1]},
        "states": {"k_cache": cache, "v_cache": cache},
        "outputs": {"states": [1, 1, c.hidden_size], "logits": [1, 1, c.head_size]},
        "vocab_ids": d.vocab_ids.tolist(),
        "export_seconds": round(t1 - t0, 3),
        "convert_seconds": round(t2 - t1, 3),
    }
