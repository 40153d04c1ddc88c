"""Export a checkpoint: `kimi-student export pytorch | coreml | onnx | verify | parity`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kimi_student.cli.common import fail, guarded

app = typer.Typer(
    help="Export a student checkpoint: torch.export programs (.pt2), Core ML packages (FP16, INT8 weights, "
    "enumerated shapes, stateful decoder), ONNX for debugging. Each writes a manifest.json with sha256s.",
    no_args_is_help=True,
)

ExportModel = Annotated[
    Path, typer.Option("--model", help="HF Llama checkpoint folder (config.json + model.safetensors).")
]
ExportShapes = Annotated[
    str, typer.Option("--shapes", help="Enumerated sequence lengths, comma-separated (toy: 64,128,256).")
]
ExportLayout = Annotated[
    str,
    typer.Option(
        "--layout", help="bsc: (B, S, C) with linear layers; bc1s: Apple's ANE (B, C, 1, S) with 1x1 convs."
    ),
]
ExportContext = Annotated[
    int | None,
    typer.Option("--context", min=1, help="KV-cache length of the decoder (default: the largest shape)."),
]


def _export_args(model: Path, shapes: str, layout: str, out: Path, context: int | None = None) -> list[int]:
    """The parsed shapes, checked against the checkpoint (and the output folder) before any work."""
    from kimi_student.export.torch_export import check_lengths, parse_shapes
    from kimi_student.models.ane import LAYOUTS
    from kimi_student.outputs import check_outputs

    check_outputs({"--model": model}, {}, folders={"--out": out})
    if layout not in LAYOUTS:
        fail(f"--layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if not (model / "config.json").is_file():
        fail(f"{model}: not a checkpoint folder (no config.json); train one with `make worker`")
    lengths = parse_shapes(shapes)
    check_lengths(model, lengths, context)
    return lengths


@app.command("pytorch")
@guarded
def export_pytorch_cmd(
    model: ExportModel = Path("runs/worker-toy/final"),
    out: Annotated[Path, typer.Option(help="Folder for seq<S>.pt2, decode<C>.pt2, manifest.json.")] = Path(
        "artifacts/pytorch"
    ),
    shapes: ExportShapes = "512,1024,2048",
    layout: ExportLayout = "bsc",
    context: ExportContext = None,
) -> None:
    """torch.export ExportedPrograms (after run_decompositions({})), one per shape plus the KV-cache decoder."""
    from kimi_student.export.torch_export import export_pytorch

    man = export_pytorch(model, out, _export_args(model, shapes, layout, out, context), layout, context)
    for e in man["programs"]:
        typer.echo(
            f"{e['file']:<16} {e['size_bytes'] / 1e6:8.2f} MB  {e['export_seconds']:6.2f} s  {e['sha256'][:12]}"
        )
    typer.echo(f"manifest -> {out / 'manifest.json'}")


@app.command("coreml")
@guarded
def export_coreml_cmd(
    model: ExportModel = Path("runs/worker-toy/final"),
    out: Annotated[Path, typer.Option(help="Folder for the .mlpackages and manifest.json.")] = Path(
        "coreml/artifacts"
    ),
    shapes: ExportShapes = "512,1024,2048",
    weights: Annotated[
        str,
        typer.Option(
            help="Stored weights: int8 (symmetric, a scale per output channel), int4 (symmetric, a scale per "
            "block of 32 input channels), int4emb8 (int4, with the embedding and output head at int8: "
            "+12.5 MB on a 135M Worker, the 4-bit grid QAT recovers best) or fp16. For a 4-bit grid, train "
            "with the same scheme (`train --qat int4emb8`) so the student is used to its weights.",
        ),
    ] = "int8",
    layout: ExportLayout = "bsc",
    context: ExportContext = None,
    decode: Annotated[bool, typer.Option(help="Also write the stateful KV-cache decoder (iOS18).")] = True,
    chunks: Annotated[
        str,
        typer.Option(
            "--chunks",
            help="Token counts the decoder also takes in one call, comma-separated, each its own function "
            "of the decoder package (weights stored once): prompt prefill and draft verification. On "
            "SmolLM2-135M in the MIL executor (2 cores) an 8-token call costs ~1.5x a one-token call and a "
            "32-token call ~2.5x. '' for the one-token decoder alone.",
        ),
    ] = "8,32",
    sequence: Annotated[
        bool,
        typer.Option(
            help="Full-sequence packages, one per shape (--no-sequence: the stateful decoder alone, sized "
            "by the largest shape or --context; all that `--runner coreml` needs in the MIL executor)."
        ),
    ] = True,
    drafter: Annotated[
        Path | None,
        typer.Option(
            help="A feature drafter trained for this model (`kimi-student drafter train`): exported beside the "
            "decoder as drafter<context>.mlpackage (the decoder's functions, its own cache, the same weight "
            "scheme), and the decoder then also returns its final hidden states, which the drafter reads.",
        ),
    ] = None,
) -> None:
    """Core ML ML programs: FP16 compute, INT8 (or INT4, FP16) weights, one package per shape, and the stateful
    decoder (and its feature drafter)."""
    from kimi_student.export.coreml import WEIGHTS, export_coreml
    from kimi_student.export.torch_export import parse_shapes

    if not (sequence or decode):
        fail("--no-sequence --no-decode: nothing to export")
    if drafter is not None and not decode:
        fail("--drafter drafts for the stateful decoder: drop --no-decode")
    if drafter is not None and not (drafter / "config.json").is_file():
        fail(
            f"--drafter {drafter}: not a drafter folder (no config.json); `kimi-student drafter train` makes one"
        )
    if weights not in WEIGHTS:
        fail(f"--weights {weights}: choose one of {', '.join(WEIGHTS)}")
    lengths = _export_args(model, shapes, layout, out, context)
    q_lens = parse_shapes(chunks, "--chunks") if chunks.strip() and decode else []
    man = export_coreml(
        model, out, lengths, weights=weights, layout=layout, context=context, decode=decode, chunks=q_lens,
        sequence=sequence, drafter=drafter,
    )  # fmt: skip
    for e in man["packages"]:
        ops = sum(v for k, v in e["op_histogram"].items() if k != "const")
        typer.echo(
            f"{e['name']:<22} {e['size_bytes'] / 1e6:8.2f} MB  convert {e['convert_seconds']:6.2f} s  "
            f"{ops} ops  {e['sha256'][:12]}"
        )
    p = man["precision"]
    typer.echo(f"{p['compute']} compute, {p['weights']} weights, {man['minimum_deployment_target']}")
    typer.echo(f"manifest -> {out / 'manifest.json'}")


@app.command("onnx")
@guarded
def export_onnx_cmd(
    model: ExportModel = Path("runs/worker-toy/final"),
    out: Annotated[Path, typer.Option(help="Folder for seq<S>.onnx and manifest.json.")] = Path(
        "artifacts/onnx"
    ),
    shapes: ExportShapes = "512,1024,2048",
    layout: ExportLayout = "bsc",
) -> None:
    """ONNX for debugging, each file checked against PyTorch with onnxruntime (max abs diff printed)."""
    from kimi_student.export.onnx_export import export_onnx

    man = export_onnx(model, out, _export_args(model, shapes, layout, out), layout)
    for e in man["files"]:
        typer.echo(
            f"{e['file']:<14} {e['size_bytes'] / 1e6:8.2f} MB  onnxruntime parity max|diff| "
            f"{e['parity_max_abs_diff']:.3g}"
        )
    typer.echo(f"manifest -> {out / 'manifest.json'}")


@app.command("verify")
@guarded
def export_verify_cmd(
    folder: Annotated[Path, typer.Argument(help="An export folder holding manifest.json.")],
) -> None:
    """Check every artifact of an export folder against its manifest (sha256 of each file)."""
    from kimi_student.export.verify import verify_export

    man = verify_export(folder)
    n = len(man.get("packages") or man.get("programs") or man.get("files") or [])
    typer.echo(f"verify: OK ({n} {man['format']} artifacts match {folder / 'manifest.json'})")


@app.command("parity")
@guarded
def export_parity_cmd(
    package: Annotated[
        Path, typer.Option(help="A full-sequence package, e.g. coreml/artifacts/worker/seq128.mlpackage")
    ],
    model: ExportModel = Path("runs/worker-toy/final"),
    prompts: Annotated[Path, typer.Option(help="Dataset or prompt JSONL whose prompts to run.")] = Path(
        "data/contextual_final.jsonl"
    ),
    n: Annotated[int, typer.Option(min=1, help="How many prompts.")] = 8,
    tokens: Annotated[int, typer.Option(min=1, help="Greedy tokens to decode and compare.")] = 16,
    dequantized: Annotated[
        bool, typer.Option(help="Compare with PyTorch on the package's own dequantized weights.")
    ] = True,
    report: Annotated[Path | None, typer.Option(help="Write the parity report JSON here.")] = None,
) -> None:
    """Run a saved Core ML package in the numpy MIL executor and compare it with PyTorch.

    Reports max abs logit difference, top-1 agreement and whether greedy decoding gives the same
    tokens. Exit 1 when top-1 agreement is below 100% or greedy tokens differ; exit 2 when no weight of
    the package matches the checkpoint (with --dequantized, the default).
    """
    from tokenizers import Tokenizer

    from kimi_student.data.kd_mix import load_prompts
    from kimi_student.export.parity import check_parity
    from kimi_student.jsonl import write_json
    from kimi_student.outputs import check_outputs

    check_outputs({"--package": package, "--model": model, "--prompts": prompts}, {"--report": report})
    if not (model / "tokenizer.json").is_file():
        fail(f"{model}: no tokenizer.json (a checkpoint folder as `train` writes it)")
    if not package.is_dir():
        fail(f"{package}: no such package")
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    reqs = load_prompts(prompts, system=False)[:n]
    ids = [tok.encode(r.messages[-1]["content"]).ids for r in reqs]
    rep = check_parity(model, package, ids, tokens, dequantized)
    if report:
        write_json(report, rep.to_json())
    ok = rep.top1_agreement == 1.0 and rep.greedy_match
    typer.echo(
        f"parity {package.name} (S={rep.seq_len}, {rep.prompts} prompts, "
        f"{f'{rep.weights_replaced} dequantized package weights' if dequantized else 'checkpoint weights'}): "
        f"max |logit diff| {rep.max_abs_logit_diff:.4g}, top-1 agreement {rep.top1_agreement:.4f}, "
        f"greedy {rep.greedy_tokens} tokens {'identical' if rep.greedy_match else 'DIFFER'}"
    )
    raise typer.Exit(0 if ok else 1)
