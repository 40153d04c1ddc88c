"""Evaluation: `kimi-student eval` (run, score, gate), `merge`, `smoke` and `fixture-stats`."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from kimi_student.cli.common import cpu_cores, fail, fmt, guarded, show_progress
from kimi_student.eval.runners.options import RunnerOptions
from kimi_student.resources import config_path

app = typer.Typer(
    help="Run a dataset through a runner, score the transcripts, apply the CAWS gates and write a "
    "fingerprinted report. Exit 0: every gate passes; 1: a gate failed or was inconclusive; 2: bad input.\n\n"
    "Examples: `kimi-student eval --runner verification_only --in data/contextual_final.jsonl`; "
    "`kimi-student eval --runner hf_local --model runs/worker-toy/final --in data/contextual_final.jsonl "
    "--workers 2`; `kimi-student eval smoke` (runner parity on the toy student)."
)


_FIELDS = {f.name: f for f in fields(RunnerOptions)}
_OPTIONS = RunnerOptions()  # the defaults


def _flag(name: str) -> str:
    """The flag of a RunnerOptions field: `--max-turns`, or the one its metadata names (`--timeout`)."""
    return _FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")


def _runner_option(name: str) -> Any:
    """The option of a RunnerOptions field, with its help text and least value from the field."""
    meta = _FIELDS[name].metadata
    least = {} if meta["min"] is None else {"min": meta["min"]}
    return typer.Option(_flag(name), help=meta["help"], rich_help_panel="Model runners", **least)


def _options_from(params: dict[str, Any]) -> RunnerOptions:
    """RunnerOptions from a command's parameters, each named after its flag (`--timeout`: `timeout`)."""
    return RunnerOptions(**{name: params[_flag(name)[2:].replace("-", "_")] for name in _FIELDS})


Model = Annotated[str | None, _runner_option("model")]
Url = Annotated[str | None, _runner_option("url")]
MaxTurns = Annotated[int, _runner_option("max_turns")]
MaxNewTokens = Annotated[int, _runner_option("max_new_tokens")]
PromptWrapper = Annotated[str, _runner_option("prompt_wrapper")]
BatchSize = Annotated[int, _runner_option("batch_size")]
Dtype = Annotated[str, _runner_option("dtype")]
ToolProtocol = Annotated[str, _runner_option("tool_protocol")]
Concurrency = Annotated[int, _runner_option("concurrency")]
Timeout = Annotated[float, _runner_option("timeout_s")]
Retries = Annotated[int, _runner_option("max_retries")]
ModelTokenizer = Annotated[str | None, _runner_option("tokenizer")]
ApiKeyEnv = Annotated[str | None, _runner_option("api_key_env")]
DraftModel = Annotated[str | None, _runner_option("draft_model")]
DraftK = Annotated[int, _runner_option("draft_k")]
DraftConfidence = Annotated[float, _runner_option("draft_confidence")]

RunnerName = Annotated[
    str | None,
    typer.Option(
        "--runner",
        help="verification_only (scores the gold text: proves the scorer), predictions (a JSONL of "
        "outputs), or a model through the tool loop: hf_local (checkpoint folder), openai_http "
        "(OpenAI-compatible endpoint), coreml (exported packages).",
    ),
]
Dataset = Annotated[Path | None, typer.Option("--in", help="Extracted dataset JSONL.")]
ResultsOut = Annotated[Path, typer.Option("--out", help="Per-item results JSONL.")]
ReportOut = Annotated[Path, typer.Option("--report", help="Report JSON.")]
GatesIn = Annotated[
    Path, typer.Option("--gates", help="Gate thresholds.", show_default="packaged configs/gates.yaml")
]
PredictionsIn = Annotated[
    str | None, typer.Option("--predictions", help="JSONL of {id, output} (runner predictions).")
]
Tokenizer = Annotated[str | None, typer.Option("--tokenizer", help="Defaults to the dataset's tokenizer.")]
Fixtures = Annotated[
    list[str] | None, typer.Option("--fixtures", help="Fixture folder(s); default: the dataset's + base.")
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        help="Worker processes, each with its own runner (items split by sha256(id)). "
        "The results and report are byte-identical for any number (hf_local: batches are formed per "
        "worker, so a near-tie under other padding could differ). At most the CPU cores, or 2 on a "
        "one-core machine (two processes time-share a core at little cost; many thrash).",
        rich_help_panel="Scale and resume",
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="i/n: score only shard i of n (one job per machine); writes the shard's results and a "
        "report without gates. Join the shards with `kimi-student eval merge`.",
        rich_help_panel="Scale and resume",
    ),
]
Fresh = Annotated[
    bool,
    typer.Option(
        "--fresh",
        help="Discard an unfinished run's scored items (<out>.parts/) instead of resuming it.",
        rich_help_panel="Scale and resume",
    ),
]
RESULTS, REPORT, GATES = (
    Path("eval/results/latest.jsonl"),
    Path("eval/reports/latest.json"),
    config_path("gates.yaml"),  # eval.gates.DEFAULT_GATES, without importing the scorer at start-up
)


@app.callback(invoke_without_command=True)
@guarded
def eval_run(
    ctx: typer.Context,
    runner: RunnerName = None,
    inp: Dataset = None,
    out: ResultsOut = RESULTS,
    report: ReportOut = REPORT,
    predictions: PredictionsIn = None,
    tokenizer: Tokenizer = None,
    fixtures: Fixtures = None,
    gates: GatesIn = GATES,
    model: Model = None,  # unset unless given; the other runner options default as RunnerOptions says
    url: Url = None,
    max_turns: MaxTurns = _OPTIONS.max_turns,
    max_new_tokens: MaxNewTokens = _OPTIONS.max_new_tokens,
    prompt_wrapper: PromptWrapper = _OPTIONS.prompt_wrapper,
    batch_size: BatchSize = _OPTIONS.batch_size,
    dtype: Dtype = _OPTIONS.dtype,
    tool_protocol: ToolProtocol = _OPTIONS.tool_protocol,
    concurrency: Concurrency = _OPTIONS.concurrency,
    timeout: Timeout = _OPTIONS.timeout_s,
    retries: Retries = _OPTIONS.max_retries,
    model_tokenizer: ModelTokenizer = None,
    api_key_env: ApiKeyEnv = None,
    draft_model: DraftModel = None,
    draft_k: DraftK = _OPTIONS.draft_k,
    draft_confidence: DraftConfidence = _OPTIONS.draft_confidence,
    workers: Workers = 1,
    shard: Shard = None,
    fresh: Fresh = False,
) -> None:
    """Run a dataset through a runner, score it and apply the CAWS gates.

    Exit 0: all gates pass; 1: a gate failed or was inconclusive; 2: bad input.

    Examples:

      kimi-student eval --runner verification_only --in data/contextual_final.jsonl

      kimi-student eval --runner hf_local --model runs/worker/final --in data/contextual_final.jsonl

      kimi-student eval --runner openai_http --url http://127.0.0.1:8000/v1 --model my-model --in ...

      kimi-student eval --runner coreml --model coreml/artifacts/worker --in ...

      kimi-student eval --runner hf_local --model ... --in ... --shard 0/4 --out r0.jsonl --report r0.json

      kimi-student eval --runner hf_local --model ... --in ... --batch-size 1 --draft-model prompt-lookup

    Items are written to <out>.parts/ as they are scored: after a crash or a kill, the same command
    scores only the items still missing (--fresh starts over).
    """
    if ctx.invoked_subcommand is not None:
        return
    if runner is None or inp is None:
        fail("eval needs --runner and --in (see `kimi-student eval --help`)")
    if workers > (cap := max(cores := cpu_cores(), 2)):  # 64 workers on 2 cores ran 30x slower than 1
        fail(
            f"--workers {workers}: this machine has {cores} CPU cores; use at most {cap} (workers beyond "
            "the cores only slow the run down)"
        )
    from kimi_student.eval.harness import run_eval
    from kimi_student.eval.report import EvalPaths
    from kimi_student.eval.runners.base import RunnerSpec
    from kimi_student.eval.shards import parse_shard
    from kimi_student.jsonl import freeze_at_exit
    from kimi_student.outputs import check_outputs

    check_outputs(
        {"--in": inp, "--predictions": predictions, "--gates": gates, "--tokenizer": tokenizer},
        {"--out": out, "--report": report},
        siblings={"--out": (".parts",)},
    )

    shard_ = parse_shard(shard) if shard is not None else None
    freeze_at_exit()  # the command ends with the dataset and every row still alive
    rep = run_eval(
        inp,
        RunnerSpec(runner, predictions, _options_from(ctx.params)),
        EvalPaths(out, report),
        tokenizer=tokenizer,
        fixtures=fixtures,
        gates=gates,
        workers=workers,
        shard=shard_,
        fresh=fresh,
        progress=show_progress(),
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
        f"token_align_ok_rate {fmt(s['token_align_ok_rate'])}"
    )
    typer.echo(gate_table(rep["gates"]))
    if s.get("over_context_items"):
        typer.echo(
            f"{s['over_context_items']} items outgrew the model's context: scored as they are (nothing dropped); "
            "their ids are the report's summary.over_context_ids"
        )
    for p in s["fingerprint_problems"]:
        typer.echo(f"fingerprint: {p}", err=True)
    typer.echo(f"{'PASS' if rep['passed'] else 'FAIL'}  report -> {report}  results -> {out}")
    raise typer.Exit(0 if rep["passed"] else 1)


@app.command("merge")
@guarded
def eval_merge(
    shards: Annotated[
        list[Path], typer.Argument(help="The results JSONL of every shard (eval --shard i/n --out ...).")
    ],
    out: ResultsOut = RESULTS,
    report: ReportOut = REPORT,
    gates: GatesIn = GATES,
) -> None:
    """Join shard results into one run's results and report (byte-identical to the unsharded run with
    the same --out/--report) and apply the gates.

    Every shard must be there exactly once, from the same dataset, runner, model and fingerprints, each
    row sealed with this run key: shards from several machines need the same KIMI_STUDENT_RUN_KEY on each.
    Exit 0: all gates pass; 1: a gate failed or was inconclusive; 2: bad input.

    Example: kimi-student eval merge r0.jsonl r1.jsonl r2.jsonl r3.jsonl --out r.jsonl --report r.json
    """
    from kimi_student.eval.report import EvalPaths
    from kimi_student.eval.shards import merge_shards
    from kimi_student.outputs import check_outputs

    check_outputs({"a shard": shards, "--gates": gates}, {"--out": out, "--report": report})
    _print_eval(merge_shards(shards, EvalPaths(out, report), gates), report, out)


@app.command("smoke")
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
    from kimi_student.eval.runners.model import MODEL_RUNNERS
    from kimi_student.outputs import check_outputs
    from kimi_student.recipes.runner_smoke import run_smoke, smoke_lines

    check_outputs({"--toy": toy}, {}, folders={"--out": out})
    names = tuple(r.strip() for r in runners.split(",") if r.strip())
    unknown = [r for r in names if r not in MODEL_RUNNERS]
    if unknown or not names:
        fail(f"--runners takes {', '.join(MODEL_RUNNERS)} (got {runners!r})")
    rep = run_smoke(toy, out, names, limit, tolerance, log=typer.echo)
    for line in smoke_lines(rep):
        typer.echo(line)
    typer.echo(f"{'PASS' if rep['passed'] else 'FAIL'}  report -> {out / 'smoke.json'}")
    raise typer.Exit(0 if rep["passed"] else 1)


@app.command("fixture-stats")
@guarded
def fixture_stats(
    report: Annotated[Path, typer.Option(help="Report JSON to read.")] = Path("eval/reports/latest.json"),
    top: Annotated[int, typer.Option(help="How many misses to list, the most frequent first.")] = 20,
) -> None:
    """Print the fixture hit-rate and the (tool, key) misses of a report, the most frequent first."""
    from kimi_student.errors import InputError

    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise InputError(report, None, "summary", f"not a readable report ({e})"[:300]) from None
    rate, calls, n_miss, misses = _fixture_summary(doc, report)
    typer.echo(f"fixture_hit_rate {fmt(rate)}  calls {calls}  misses {n_miss}")
    for m in sorted(misses, key=lambda m: -m["count"] if isinstance(m["count"], int) else 0)[:top]:
        typer.echo(f"  miss x{m['count']}  {m['tool']}  {m['key']}")


def _fixture_summary(doc: Any, report: Path) -> tuple[float | None, int, int, list[dict[str, Any]]]:
    """(hit rate, tool calls, miss count, misses) of a report, each checked: a report with a key missing
    or mistyped is one line naming the field, not a traceback."""
    from kimi_student.errors import InputError

    s = doc.get("summary") if isinstance(doc, dict) else None
    if not isinstance(s, dict):
        raise InputError(report, None, "summary", "missing or not an object: not an eval report")
    rate = s.get("fixture_hit_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))):
        raise InputError(report, None, "summary.fixture_hit_rate", "expected a number or null")
    for key in ("tool_calls", "fixture_miss_count"):
        if type(s.get(key)) is not int:
            raise InputError(report, None, f"summary.{key}", "missing or not an integer")
    misses = s.get("fixture_misses")
    if not isinstance(misses, list):
        raise InputError(report, None, "summary.fixture_misses", "missing or not a list")
    for i, m in enumerate(misses):
        if not (isinstance(m, dict) and all(k in m for k in ("count", "tool", "key"))):
            raise InputError(report, None, f"summary.fixture_misses[{i}]", "expected {count, tool, key}")
    return rate, s["tool_calls"], s["fixture_miss_count"], misses
