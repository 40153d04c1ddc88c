"""Evaluation: `kimi-student eval` (run, score, gate), `merge`, `smoke` and `fixture-stats`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from kimi_student.cli.common import fail, fmt, guarded, show_progress
from kimi_student.eval.gates import DEFAULT_GATES

app = typer.Typer(
    help="Run a dataset through a runner, score the transcripts, apply the CAWS gates and write a "
    "fingerprinted report. Exit 0: every gate passes; 1: a gate failed or was inconclusive; 2: bad input.\n\n"
    "Examples: `kimi-student eval --runner verification_only --in data/contextual_final.jsonl`; "
    "`kimi-student eval --runner hf_local --model runs/worker-toy/final --in data/contextual_final.jsonl "
    "--workers 2`; `kimi-student eval smoke` (runner parity on the toy student)."
)


@app.callback(invoke_without_command=True)
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
    gates: Annotated[
        Path, typer.Option(help="Gate thresholds.", show_default="packaged configs/gates.yaml")
    ] = DEFAULT_GATES,
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
        fail("eval needs --runner and --in (see `kimi-student eval --help`)")
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
        progress=show_progress(),
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
        f"token_align_ok_rate {fmt(s['token_align_ok_rate'])}"
    )
    typer.echo(gate_table(rep["gates"]))
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
    out: Annotated[Path, typer.Option(help="Per-item results JSONL.")] = Path("eval/results/latest.jsonl"),
    report: Annotated[Path, typer.Option(help="Report JSON.")] = Path("eval/reports/latest.json"),
    gates: Annotated[
        Path, typer.Option(help="Gate thresholds.", show_default="packaged configs/gates.yaml")
    ] = DEFAULT_GATES,
) -> None:
    """Join shard results into one run's results and report (byte-identical to the unsharded run with
    the same --out/--report) and apply the gates.

    Every shard must be there exactly once, from the same dataset, runner, model and fingerprints.
    Exit 0: all gates pass; 1: a gate failed or was inconclusive; 2: bad input.

    Example: kimi-student eval merge r0.jsonl r1.jsonl r2.jsonl r3.jsonl --out r.jsonl --report r.json
    """
    from kimi_student.eval.harness import merge_shards

    _print_eval(merge_shards(shards, out, report, gates), report, out)


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
    from kimi_student.recipes.runner_smoke import run_smoke, smoke_lines

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
    top: Annotated[int, typer.Option(help="How many misses to list.")] = 20,
) -> None:
    """Print the fixture hit-rate and the (tool, key) misses of a report."""
    from kimi_student.errors import InputError

    try:
        s = json.loads(report.read_text(encoding="utf-8"))["summary"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise InputError(report, None, "summary", f"not a readable report ({e})") from None
    rate = s["fixture_hit_rate"]
    typer.echo(f"fixture_hit_rate {fmt(rate)}  calls {s['tool_calls']}  misses {s['fixture_miss_count']}")
    for m in s["fixture_misses"][:top]:
        typer.echo(f"  miss x{m['count']}  {m['tool']}  {m['key']}")
