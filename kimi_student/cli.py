"""The `kimi-student` command line: one subcommand per stage. Makefile targets call these."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kimi_student.errors import KimiStudentError

app = typer.Typer(
    help="kimi-student: distil teacher LLMs into small tool-using students, and prove them with gated, "
    "fingerprinted evaluation.\n\nPipeline: contextual gen -> contextual extract -> contextual verify -> eval.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tools_app = typer.Typer(help="The tool registry and the ToolBroker's fixtures.", no_args_is_help=True)
ctx_app = typer.Typer(help="The contextual tool-use dataset: gen -> extract -> verify.", no_args_is_help=True)
tok_app = typer.Typer(
    help="Tokenizers: the embedded SmolLM2 one, or a small BPE trained here.", no_args_is_help=True
)
eval_app = typer.Typer(
    help="Run a dataset through a runner, score the transcripts, apply the CAWS gates and write a "
    "fingerprinted report. Exit 0: every gate passes; 1: a gate failed or was inconclusive; 2: bad input.\n\n"
    "Examples: `kimi-student eval --runner verification_only --in data/contextual_final.jsonl`; "
    "`kimi-student eval --runner hf_local --model runs/worker-toy/final --in data/contextual_final.jsonl "
    "--workers 2`; `kimi-student eval smoke` (runner parity on the toy student)."
)
app.add_typer(tools_app, name="tools")
app.add_typer(ctx_app, name="contextual")
app.add_typer(tok_app, name="tokenizer")
app.add_typer(eval_app, name="eval")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def _progress() -> bool:
    return sys.stderr.isatty()


def main() -> None:  # pragma: no cover - entry point wrapper
    app()


@app.callback()
def _root() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched from a hub


def guarded(fn: Any) -> Any:
    """Every known failure becomes one line on stderr and exit code 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except KimiStudentError as e:
            _fail(str(e))

    return wrapper


# ---- tools ---------------------------------------------------------------------------------------------


@tools_app.command("list")
@guarded
def tools_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the registry as JSON.")] = False,
) -> None:
    """List the registered tools, their evidence fields and the registry fingerprint."""
    from kimi_student.tools.registry import TOOLS, registry_json, tool_registry_sha256

    if as_json:
        typer.echo(json.dumps(registry_json(), indent=2, ensure_ascii=False))
        return
    for t in TOOLS:
        ev = ", ".join(e.path + (" (lines)" if e.mode == "lines" else "") for e in t.evidence)
        typer.echo(f"{t.name:<13} {'live' if t.live else 'replay'}  evidence: {ev}\n{'':<14}{t.description}")
    typer.echo(f"\ntool_registry_sha256 {tool_registry_sha256()}")


@tools_app.command("schema")
@guarded
def tools_schema(name: Annotated[str, typer.Argument(help="Tool name, e.g. web.search")]) -> None:
    """Print one tool's JSON Schema (its `parameters`)."""
    from kimi_student.tools.registry import UnknownToolError, get_tool, registry

    try:
        typer.echo(json.dumps(get_tool(name).parameters, indent=2, ensure_ascii=False))
    except UnknownToolError:
        _fail(f"unknown tool {name!r}; known: {', '.join(registry())}")


@tools_app.command("record")
@guarded
def tools_record(
    calls: Annotated[Path, typer.Option(help="JSONL of {name, arguments} calls to record.")] = Path(
        "eval/tool_broker/record_calls.jsonl"
    ),
    sandbox: Annotated[
        Path, typer.Option(help="Sandbox folder the live tools run in (a copy is used).")
    ] = Path("eval/tool_broker/sandbox"),
    out: Annotated[Path, typer.Option(help="Fixture folder to write <tool>.jsonl into.")] = Path(
        "eval/tool_broker/fixtures"
    ),
) -> None:
    """Build fixtures by running the live tools (math.eval, read_file, file.write, repo.search) in a sandbox."""
    from kimi_student.jsonl import read_jsonl
    from kimi_student.tools.broker import record

    counts = record((row for _, row in read_jsonl(calls)), sandbox, out)
    for name, n in sorted(counts.items()):
        typer.echo(f"{name}: {n} fixtures -> {out / (name + '.jsonl')}")


# ---- contextual dataset ----------------------------------------------------------------------------------


@ctx_app.command("gen")
@guarded
def contextual_gen(
    out: Annotated[Path, typer.Option(help="Dataset JSONL to write.")] = Path("data/contextual.jsonl"),
    n: Annotated[int, typer.Option(min=1, help="Number of items.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives a byte-identical dataset.")] = 0,
) -> None:
    """Generate a stratified contextual dataset and the fixtures of every call it makes.

    Fixtures go to <out>.fixtures/ beside the dataset; the header points at them.
    """
    from kimi_student.data.contextual import generate, write_dataset

    header, items, fixtures = generate(n, seed)
    fx_dir = write_dataset(out, header, items, fixtures)
    typer.echo(f"wrote {len(items)} items to {out} and {len(fixtures)} fixtures to {fx_dir}/")


@ctx_app.command("extract")
@guarded
def contextual_extract(
    inp: Annotated[Path, typer.Option("--in", help="Dataset JSONL from `contextual gen`.")] = Path(
        "data/contextual.jsonl"
    ),
    out: Annotated[Path, typer.Option(help="Dataset JSONL with spans added.")] = Path(
        "data/contextual_final.jsonl"
    ),
    tokenizer: Annotated[
        str, typer.Option(help="'smollm2' (embedded) or a tokenizer.json path.")
    ] = "smollm2",
) -> None:
    """Add UTF-8 byte offsets and token spans of tool names, JSON arguments and integration spans."""
    import os.path

    from kimi_student.data.dataset import read_dataset
    from kimi_student.data.extract import extract_items
    from kimi_student.jsonl import write_jsonl
    from kimi_student.tokenizer import load_tokenizer

    header, items = read_dataset(inp)
    tok = load_tokenizer(tokenizer)
    rows = extract_items(items, tok)
    header = {**header, "tokenizer": tokenizer, "tokenizer_fingerprint": tok.fingerprint}
    if header.get("fixtures_dir"):  # keep pointing at the same fixture folder from the new location
        header["fixtures_dir"] = os.path.relpath(
            (inp.parent / header["fixtures_dir"]).resolve(), out.parent.resolve()
        )
    write_jsonl(out, [header, *rows])
    typer.echo(f"extracted spans for {len(rows)} items with {tokenizer} ({tok.fingerprint[:12]}) -> {out}")


@ctx_app.command("verify")
@guarded
def contextual_verify(
    inp: Annotated[Path, typer.Option("--in", help="Dataset JSONL (extracted, for token checks).")] = Path(
        "data/contextual_final.jsonl"
    ),
    report: Annotated[Path, typer.Option(help="Verify report JSON to write.")] = Path(
        "eval/reports/contextual_verify.json"
    ),
    tokenizer: Annotated[str | None, typer.Option(help="Defaults to the dataset's own tokenizer.")] = None,
) -> None:
    """Check calls (JSON, schema, fixtures), spans (bounds, bytes, tokens), CAWS header, privacy; print coverage.

    Exit 0 when every check holds, 1 when a check failed, 2 on bad input.
    """
    from kimi_student.data.dataset import read_dataset
    from kimi_student.data.verify import verify
    from kimi_student.eval.harness import dataset_fixture_dirs
    from kimi_student.jsonl import write_json
    from kimi_student.tokenizer import load_tokenizer
    from kimi_student.tools.broker import ToolBroker

    header, items = read_dataset(inp)
    spec = tokenizer or header.get("tokenizer")
    tok = load_tokenizer(spec) if spec else None
    rep = verify(header, items, ToolBroker.from_folders(dataset_fixture_dirs(inp, header)), tok)
    write_json(report, rep)
    cov = rep["coverage"]
    for k in ("scenario", "complexity", "structure", "locale", "expected_behaviour", "adversarial"):
        typer.echo(f"{k:<19} " + "  ".join(f"{a}={b}" for a, b in cov[k].items()))
    typer.echo(f"negative_control    {cov['negative_control']}   long_context {cov['long_context']}")
    st = cov["strata"]
    typer.echo(f"strata covered      {st['covered']}/{st['possible']} ({st['fraction']:.1%})")
    if rep["ok"]:
        typer.echo(f"verify: OK ({rep['items']} items) -> {report}")
        return
    for k, v in rep["problems"].items():
        typer.echo(f"verify: {k}: {v} (e.g. {rep['examples'][k]})", err=True)
    raise typer.Exit(1)


# ---- distillation ------------------------------------------------------------------------------------------


@app.command("kd-mix")
@guarded
def kd_mix(
    teacher: Annotated[
        str,
        typer.Option(
            help="smollm2 (embedded, default), hf:<folder|file.gguf>, or "
            "http(s)://host[/v1] (OpenAI-compatible)."
        ),
    ] = "smollm2",
    prompts: Annotated[
        Path, typer.Option(help="Contextual dataset or prompt JSONL ({id, prompt|messages}).")
    ] = Path("data/contextual.jsonl"),
    out: Annotated[Path, typer.Option(help="KD dataset JSONL (shards and cache go beside it).")] = Path(
        "data/kd_mix.jsonl"
    ),
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N prompts.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    top_logprobs: Annotated[int, typer.Option(min=0, max=100, help="Top-k logprobs to keep (0: none).")] = 20,
    seed: Annotated[int, typer.Option()] = 0,
    model: Annotated[str | None, typer.Option(help="Model name sent to an HTTP teacher.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Parallel requests to an HTTP teacher.")] = 8,
    max_retries: Annotated[int, typer.Option(min=0, help="Retries on 429/5xx/timeouts.")] = 6,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per HTTP request.")] = 120.0,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            help="Env var holding the API key (default: "
            "KIMI_STUDENT_API_KEY, KIMI_API_KEY, MOONSHOT_API_KEY, "
            "OPENAI_API_KEY)."
        ),
    ] = None,
    system: Annotated[bool, typer.Option(help="Prepend the tool-use system prompt to plain prompts.")] = True,
) -> None:
    """Build the KD dataset: ask the teacher every prompt, keep its text and top-k logprobs.

    Answers are cached by request sha256 beside the output: rerunning (also after a crash or kill)
    asks only what is missing. Failed requests are recorded with their reason. Exit 1 if any failed.
    """
    from kimi_student.data.kd_mix import build_kd_mix, load_prompts, prompt_set_sha256, with_decoding
    from kimi_student.teachers import make_teacher
    from kimi_student.teachers.base import Decoding

    reqs = load_prompts(prompts, system=system)[:limit]
    reqs = with_decoding(reqs, Decoding(max_new_tokens, temperature, top_p, top_logprobs, seed))
    opts: dict[str, Any] = {"top_k": top_logprobs or 20}
    if teacher.startswith(("http://", "https://")):
        from kimi_student.tokenizer import load_tokenizer

        opts.update(
            model=model,
            concurrency=concurrency,
            max_retries=max_retries,
            timeout_s=timeout,
            api_key_env=api_key_env,
            vocab=load_tokenizer("smollm2").tok.get_vocab(),
        )
    t = make_teacher(teacher, **opts)
    header = build_kd_mix(t, reqs, out, prompt_set_sha256(reqs), progress=_progress())
    bpt = header["logprob_bytes_per_token"]
    typer.echo(
        f"{header['ok']}/{header['records']} answered ({header['from_cache']} from cache), "
        f"{header['failed']} failed, {header['logprob_tokens']} logprob tokens"
        + (f" at {bpt:.0f} bytes/token" if bpt else "")
        + f" -> {out}"
    )
    raise typer.Exit(1 if header["failed"] else 0)


@app.command("train")
@guarded
def train_cmd(
    config: Annotated[str, typer.Option(help="worker, judge, drafter or a YAML path.")] = "worker",
    size: Annotated[
        str, typer.Option(help="A size under `sizes:` in the config (toy, small, full).")
    ] = "toy",
    data: Annotated[
        Path | None, typer.Option(help="Contextual dataset (gold text, loss ce_ground_truth).")
    ] = None,
    kd: Annotated[Path | None, typer.Option(help="KD mix (teacher text + top-k logprobs).")] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            help="In-process teacher for full-logit KD: smollm2 or an "
            "HF folder (same tokenizer as the student)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints/, train_log.jsonl, final/.")] = Path(
        "runs/worker-toy"
    ),
    max_steps: Annotated[int | None, typer.Option(min=1, help="Override the config's max_steps.")] = None,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 only where the hardware has it), bf16, fp16, no.")
    ] = "auto",
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N examples.")] = None,
) -> None:
    """Train a student with the config's losses; resumes from the run folder's latest checkpoint.

    The final checkpoint (out/final) is an HF Llama folder that AutoModelForCausalLM loads.
    A non-finite loss stops the run with exit code 3 and keeps the last good checkpoint.
    """
    from kimi_student.models.student import load_spec
    from kimi_student.train.trainer import TrainingError, train

    if data is None and kd is None:
        _fail("train needs --data and/or --kd")
    spec = load_spec(config, size)
    try:
        res = train(
            spec,
            out,
            str(data) if data else None,
            str(kd) if kd else None,
            teacher,
            max_steps,
            precision=precision,
            progress=_progress(),
            limit=limit,
        )
    except TrainingError as e:
        _fail(str(e), code=3)
    h = res["history"]
    typer.echo(
        f"trained {spec.role}/{spec.size} ({spec.n_params / 1e6:.1f}M params, {res['precision']}) "
        f"{res['steps']} steps: loss {h[0]['loss']:.4f} -> {h[-1]['loss']:.4f}, "
        f"{res['tokens_per_s']:.0f} tokens/s -> {res['final']}"
    )


# ---- export ------------------------------------------------------------------------------------------------

export_app = typer.Typer(
    help="Export a student checkpoint: torch.export programs (.pt2), Core ML packages (FP16, INT8 weights, "
    "enumerated shapes, stateful decoder), ONNX for debugging. Each writes a manifest.json with sha256s.",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")

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


def _export_args(model: Path, shapes: str, layout: str) -> list[int]:
    from kimi_student.export.torch_export import parse_shapes
    from kimi_student.models.ane import LAYOUTS

    if layout not in LAYOUTS:
        _fail(f"--layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if not (model / "config.json").is_file():
        _fail(f"{model}: not a checkpoint folder (no config.json); train one with `make worker`")
    return parse_shapes(shapes)


@export_app.command("pytorch")
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

    man = export_pytorch(model, out, _export_args(model, shapes, layout), layout, context)
    for e in man["programs"]:
        typer.echo(
            f"{e['file']:<16} {e['size_bytes'] / 1e6:8.2f} MB  {e['export_seconds']:6.2f} s  {e['sha256'][:12]}"
        )
    typer.echo(f"manifest -> {out / 'manifest.json'}")


@export_app.command("coreml")
@guarded
def export_coreml_cmd(
    model: ExportModel = Path("runs/worker-toy/final"),
    out: Annotated[Path, typer.Option(help="Folder for the .mlpackages and manifest.json.")] = Path(
        "coreml/artifacts"
    ),
    shapes: ExportShapes = "512,1024,2048",
    quantize: Annotated[
        bool, typer.Option(help="INT8 per-channel weights (--no-quantize: FP16 weights).")
    ] = True,
    layout: ExportLayout = "bsc",
    context: ExportContext = None,
    decode: Annotated[bool, typer.Option(help="Also write the stateful KV-cache decoder (iOS18).")] = True,
) -> None:
    """Core ML ML programs: FP16 compute, INT8 weights, one package per shape, and the stateful decoder."""
    from kimi_student.export.coreml import export_coreml

    man = export_coreml(model, out, _export_args(model, shapes, layout), quantize, layout, context, decode)
    for e in man["packages"]:
        ops = sum(v for k, v in e["op_histogram"].items() if k != "const")
        typer.echo(
            f"{e['name']:<22} {e['size_bytes'] / 1e6:8.2f} MB  convert {e['convert_seconds']:6.2f} s  "
            f"{ops} ops  {e['sha256'][:12]}"
        )
    p = man["precision"]
    typer.echo(f"{p['compute']} compute, {p['weights']} weights, {man['minimum_deployment_target']}")
    typer.echo(f"manifest -> {out / 'manifest.json'}")


@export_app.command("onnx")
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

    man = export_onnx(model, out, _export_args(model, shapes, layout), layout)
    for e in man["files"]:
        typer.echo(
            f"{e['file']:<14} {e['size_bytes'] / 1e6:8.2f} MB  onnxruntime parity max|diff| "
            f"{e['parity_max_abs_diff']:.3g}"
        )
    typer.echo(f"manifest -> {out / 'manifest.json'}")


@export_app.command("verify")
@guarded
def export_verify_cmd(
    folder: Annotated[Path, typer.Argument(help="An export folder holding manifest.json.")],
) -> None:
    """Check every artifact of an export folder against its manifest (sha256 of each file)."""
    from kimi_student.export.verify import verify_export

    man = verify_export(folder)
    n = len(man.get("packages") or man.get("programs") or man.get("files") or [])
    typer.echo(f"verify: OK ({n} {man['format']} artifacts match {folder / 'manifest.json'})")


@export_app.command("parity")
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
    tokens. Exit 1 when top-1 agreement is below 100% or greedy tokens differ.
    """
    from tokenizers import Tokenizer

    from kimi_student.data.kd_mix import load_prompts
    from kimi_student.export.parity import check_parity
    from kimi_student.jsonl import write_json

    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    reqs = load_prompts(prompts, system=False)[:n]
    ids = [tok.encode(r.messages[-1]["content"]).ids for r in reqs]
    rep = check_parity(model, package, ids, tokens, dequantized)
    if report:
        write_json(report, rep.to_json())
    ok = rep.top1_agreement == 1.0 and rep.greedy_match
    typer.echo(
        f"parity {package.name} (S={rep.seq_len}, {rep.prompts} prompts, "
        f"{'dequantized package weights' if dequantized else 'checkpoint weights'}): "
        f"max |logit diff| {rep.max_abs_logit_diff:.4g}, top-1 agreement {rep.top1_agreement:.4f}, "
        f"greedy {rep.greedy_tokens} tokens {'identical' if rep.greedy_match else 'DIFFER'}"
    )
    raise typer.Exit(0 if ok else 1)


# ---- toy end-to-end ---------------------------------------------------------------------------------------


@app.command("toy-e2e")
@guarded
def toy_e2e_cmd(
    out: Annotated[
        Path, typer.Option(help="Run folder: data/, tokenizer/, run/, coreml/, report.json.")
    ] = Path("runs/toy-e2e"),
    shapes: Annotated[
        str, typer.Option(help="Sequence lengths, one package each (64,128,256: the multi run).")
    ] = "128",
    seed: Annotated[int, typer.Option(help="Dataset, split and training seed.")] = 0,
    config: Annotated[Path, typer.Option(help="Toy pipeline config.")] = Path("configs/toy_e2e.yaml"),
    items: Annotated[int | None, typer.Option(min=1, help="Contextual items to generate (config).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Training steps (config).")] = None,
    report: Annotated[Path | None, typer.Option(help="Also copy the report JSON here.")] = None,
) -> None:
    """Toy end-to-end: contextual dataset -> tiny student -> ExportedProgram -> Core ML per shape -> numpy
    MIL executor -> greedy decode -> tool-span micro-F1 and gates.

    Exit 0 when every gate passes (or warns), 1 when a gate fails, 2 on bad input.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: see kimi_student/e2e.py
    from kimi_student.e2e import run_toy_e2e, summary_lines
    from kimi_student.eval.gates import gate_table
    from kimi_student.export.torch_export import parse_shapes
    from kimi_student.jsonl import write_json

    rep = run_toy_e2e(out, tuple(parse_shapes(shapes)), seed, config, items, steps, log=typer.echo)
    if report:
        write_json(report, rep)
    for line in summary_lines(rep):
        typer.echo(line)
    typer.echo(f"{'PASS' if rep['passed'] else 'FAIL'}  report -> {report or out / 'report.json'}")
    typer.echo(gate_table(rep["gates"]))
    raise typer.Exit(0 if rep["passed"] else 1)


# ---- tokenizer --------------------------------------------------------------------------------------------


@tok_app.command("train")
@guarded
def tokenizer_train(
    inp: Annotated[
        Path, typer.Option("--in", help="Dataset JSONL whose prompts and teacher texts to train on.")
    ],
    out: Annotated[Path, typer.Option(help="tokenizer.json to write.")],
    vocab_size: Annotated[int, typer.Option(min=300, help="Vocabulary size.")] = 2048,
) -> None:
    """Train a small byte-level BPE tokenizer on a dataset (deterministic)."""
    from kimi_student.data.dataset import read_dataset
    from kimi_student.tokenizer import train_bpe

    _, items = read_dataset(inp)
    tok = train_bpe((t for it in items for t in (it["prompt"], it["teacher_text"])), out, vocab_size)
    typer.echo(f"trained BPE ({tok.tok.get_vocab_size()} tokens, {tok.fingerprint[:12]}) -> {out}")


@tok_app.command("fingerprint")
@guarded
def tokenizer_fingerprint(
    spec: Annotated[str, typer.Argument(help="'smollm2' or a tokenizer.json path")],
) -> None:
    """Print a tokenizer's sha256 fingerprint."""
    from kimi_student.tokenizer import load_tokenizer

    typer.echo(load_tokenizer(spec).fingerprint)


# ---- eval ---------------------------------------------------------------------------------------------------


@eval_app.callback(invoke_without_command=True)
@guarded
def eval_run(
    ctx: typer.Context,
    runner: Annotated[
        str | None,
        typer.Option(
            help="verification_only (scores the gold text: proves the scorer), predictions (a JSONL of "
            "outputs), or a model through the tool loop: hf_local (checkpoint folder), openai_http "
            "(OpenAI-compatible endpoint), coreml (exported packages)."
        ),
    ] = None,
    inp: Annotated[Path | None, typer.Option("--in", help="Extracted dataset JSONL.")] = None,
    out: Annotated[Path, typer.Option(help="Per-item results JSONL.")] = Path("eval/results/latest.jsonl"),
    report: Annotated[Path, typer.Option(help="Report JSON.")] = Path("eval/reports/latest.json"),
    predictions: Annotated[
        str | None, typer.Option(help="JSONL of {id, output} (runner predictions).")
    ] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Defaults to the dataset's tokenizer.")] = None,
    fixtures: Annotated[
        list[str] | None, typer.Option(help="Fixture folder(s); default: the dataset's + base.")
    ] = None,
    gates: Annotated[Path, typer.Option(help="Gate thresholds.")] = Path("configs/gates.yaml"),
    model: Annotated[
        str | None,
        typer.Option(
            help="hf_local: checkpoint folder; coreml: seq<S>.mlpackage or its folder; "
            "openai_http: the served model's name.",
            rich_help_panel="Model runners",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="openai_http: endpoint, e.g. http://127.0.0.1:8000/v1.", rich_help_panel="Model runners"
        ),
    ] = None,
    max_turns: Annotated[
        int,
        typer.Option(
            min=1, help="Model turns per item (each may call one tool).", rich_help_panel="Model runners"
        ),
    ] = 4,
    max_new_tokens: Annotated[
        int, typer.Option(min=1, help="Tokens per model turn.", rich_help_panel="Model runners")
    ] = 256,
    prompt_wrapper: Annotated[
        str,
        typer.Option(
            help="system: tool list as a system message + the full prompt; request: the request alone "
            "(as the toy student is trained).",
            rich_help_panel="Model runners",
        ),
    ] = "system",
    batch_size: Annotated[
        int,
        typer.Option(min=1, help="hf_local: sequences decoded together.", rich_help_panel="Model runners"),
    ] = 8,
    tool_protocol: Annotated[
        str,
        typer.Option(
            help="openai_http: text (<tool_call> text) or tools (tools= and structured tool_calls).",
            rich_help_panel="Model runners",
        ),
    ] = "text",
    concurrency: Annotated[
        int, typer.Option(min=1, help="openai_http: requests in flight.", rich_help_panel="Model runners")
    ] = 4,
    timeout: Annotated[
        float, typer.Option(help="openai_http: seconds per request.", rich_help_panel="Model runners")
    ] = 120.0,
    retries: Annotated[
        int,
        typer.Option(
            min=0,
            help="openai_http: retries (429, 5xx, timeouts) before the item is an error.",
            rich_help_panel="Model runners",
        ),
    ] = 4,
    model_tokenizer: Annotated[
        str | None,
        typer.Option(
            help="coreml: the model's HF tokenizer folder (default: the checkpoint the manifest names).",
            rich_help_panel="Model runners",
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="openai_http: env var holding the API key.", rich_help_panel="Model runners"),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes, each with its own runner (items split by sha256(id)). "
            "The results and report are byte-identical for any number (hf_local: batches are formed per "
            "worker, so a near-tie under other padding could differ).",
            rich_help_panel="Scale and resume",
        ),
    ] = 1,
    shard: Annotated[
        str | None,
        typer.Option(
            help="i/n: score only shard i of n (one job per machine); writes the shard's results and a "
            "report without gates. Join the shards with `kimi-student eval merge`.",
            rich_help_panel="Scale and resume",
        ),
    ] = None,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Discard an unfinished run's scored items (<out>.parts/) instead of resuming it.",
            rich_help_panel="Scale and resume",
        ),
    ] = False,
) -> None:
    """Run a dataset through a runner, score it and apply the CAWS gates.

    Exit 0: all gates pass; 1: a gate failed or was inconclusive; 2: bad input.

    Examples:

      kimi-student eval --runner verification_only --in data/contextual_final.jsonl

      kimi-student eval --runner hf_local --model runs/worker/final --in data/contextual_final.jsonl

      kimi-student eval --runner openai_http --url http://127.0.0.1:8000/v1 --model my-model --in ...

      kimi-student eval --runner coreml --model coreml/artifacts/worker --in ...

      kimi-student eval --runner hf_local --model ... --in ... --shard 0/4 --out r0.jsonl --report r0.json

    Items are written to <out>.parts/ as they are scored: after a crash or a kill, the same command
    scores only the items still missing (--fresh starts over).
    """
    if ctx.invoked_subcommand is not None:
        return
    if runner is None or inp is None:
        _fail("eval needs --runner and --in (see `kimi-student eval --help`)")
    from kimi_student.eval.harness import parse_shard, run_eval

    shard_ = parse_shard(shard) if shard is not None else None
    options = {
        "model": model,
        "url": url,
        "max_turns": max_turns,
        "max_new_tokens": max_new_tokens,
        "prompt_wrapper": prompt_wrapper,
        "batch_size": batch_size,
        "tool_protocol": tool_protocol,
        "concurrency": concurrency,
        "timeout_s": timeout,
        "max_retries": retries,
        "tokenizer": model_tokenizer,
        "api_key_env": api_key_env,
    }
    rep = run_eval(
        inp,
        runner,
        out,
        report,
        predictions,
        tokenizer,
        fixtures,
        gates,
        progress=_progress(),
        runner_options=options,
        workers=workers,
        shard=shard_,
        fresh=fresh,
        log=lambda m: typer.echo(m, err=True),
    )
    if shard_ is not None:
        s = rep["summary"]
        typer.echo(
            f"shard {shard}: {s['items']} items scored, {s['error_items']} errors -> {out} (gates are "
            "applied by `kimi-student eval merge` of every shard's results)"
        )
        raise typer.Exit(0)
    _print_eval(rep, report, out)


def _print_eval(rep: dict[str, Any], report: Path, out: Path) -> None:
    from kimi_student.eval.gates import gate_table

    s = rep["summary"]
    typer.echo(
        f"runner {rep['header']['runner']}: {s['items']} items, {s['eligible_items']} eligible, "
        f"{s['tool_calls']} tool calls, {s['error_items']} errors, "
        f"token_align_ok_rate {_fmt(s['token_align_ok_rate'])}"
    )
    typer.echo(gate_table(rep["gates"]))
    for p in s["fingerprint_problems"]:
        typer.echo(f"fingerprint: {p}", err=True)
    typer.echo(f"{'PASS' if rep['passed'] else 'FAIL'}  report -> {report}  results -> {out}")
    raise typer.Exit(0 if rep["passed"] else 1)


@eval_app.command("merge")
@guarded
def eval_merge(
    shards: Annotated[
        list[Path], typer.Argument(help="The results JSONL of every shard (eval --shard i/n --out ...).")
    ],
    out: Annotated[Path, typer.Option(help="Per-item results JSONL.")] = Path("eval/results/latest.jsonl"),
    report: Annotated[Path, typer.Option(help="Report JSON.")] = Path("eval/reports/latest.json"),
    gates: Annotated[Path, typer.Option(help="Gate thresholds.")] = Path("configs/gates.yaml"),
) -> None:
    """Join shard results into one run's results and report (byte-identical to the unsharded run with
    the same --out/--report) and apply the gates.

    Every shard must be there exactly once, from the same dataset, runner, model and fingerprints.
    Exit 0: all gates pass; 1: a gate failed or was inconclusive; 2: bad input.

    Example: kimi-student eval merge r0.jsonl r1.jsonl r2.jsonl r3.jsonl --out r.jsonl --report r.json
    """
    from kimi_student.eval.harness import merge_shards

    _print_eval(merge_shards(shards, out, report, gates), report, out)


@eval_app.command("smoke")
@guarded
def eval_smoke(
    toy: Annotated[
        Path, typer.Option(help="A `toy-e2e` run folder (make toy-e2e writes runs/toy-e2e).")
    ] = Path("runs/toy-e2e"),
    out: Annotated[Path, typer.Option(help="Folder for the dataset, results and reports.")] = Path(
        "eval/smoke"
    ),
    limit: Annotated[int, typer.Option(min=1, help="Held-out items to run.")] = 60,
    runners: Annotated[str, typer.Option(help="Comma-separated runners.")] = "hf_local,coreml,openai_http",
    tolerance: Annotated[
        float, typer.Option(help="Largest F1 difference allowed between two runners.")
    ] = 0.03,
) -> None:
    """Runner smoke and parity: the toy student through hf_local, coreml and openai_http (transformers serve
    on 127.0.0.1) on the same held-out items; exit 1 when two runners' F1 differ by more than the tolerance.
    """
    from kimi_student.eval.model_runner import MODEL_RUNNERS
    from kimi_student.eval.smoke import run_smoke, smoke_lines

    names = tuple(r.strip() for r in runners.split(",") if r.strip())
    unknown = [r for r in names if r not in MODEL_RUNNERS]
    if unknown or not names:
        _fail(f"--runners takes {', '.join(MODEL_RUNNERS)} (got {runners!r})")
    rep = run_smoke(toy, out, names, limit, tolerance, log=typer.echo)
    for line in smoke_lines(rep):
        typer.echo(line)
    typer.echo(f"{'PASS' if rep['passed'] else 'FAIL'}  report -> {out / 'smoke.json'}")
    raise typer.Exit(0 if rep["passed"] else 1)


@eval_app.command("fixture-stats")
@guarded
def fixture_stats(
    report: Annotated[Path, typer.Option(help="Report JSON to read.")] = Path("eval/reports/latest.json"),
    top: Annotated[int, typer.Option(help="How many misses to list.")] = 20,
) -> None:
    """Print the fixture hit-rate and the (tool, key) misses of a report."""
    from kimi_student.errors import InputError

    try:
        s = json.loads(report.read_text(encoding="utf-8"))["summary"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise InputError(report, None, "summary", f"not a readable report ({e})") from None
    rate = s["fixture_hit_rate"]
    typer.echo(f"fixture_hit_rate {_fmt(rate)}  calls {s['tool_calls']}  misses {s['fixture_miss_count']}")
    for m in s["fixture_misses"][:top]:
        typer.echo(f"  miss x{m['count']}  {m['tool']}  {m['key']}")
