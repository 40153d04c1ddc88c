"""The `kimi-student` command line: one subcommand per stage, each group in its own module. Makefile
targets call these."""

from __future__ import annotations

import os

import typer

from kimi_student.cli import (
    caws,
    contextual,
    dashboard,
    distill,
    drafter,
    export,
    judge,
    probes,
    report,
    tokenizer,
    tools,
    toy,
)
from kimi_student.cli import eval as eval_cli

app = typer.Typer(
    help="kimi-student: distil teacher LLMs into small tool-using students, and prove them with gated, "
    "fingerprinted evaluation.\n\nPipeline: contextual gen -> contextual extract -> contextual verify -> eval.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(tools.app, name="tools")
app.add_typer(contextual.app, name="contextual")
app.add_typer(tokenizer.app, name="tokenizer")
app.add_typer(eval_cli.app, name="eval")
app.add_typer(distill.app)
app.add_typer(export.app, name="export")
app.add_typer(toy.app)
app.add_typer(caws.app, name="caws")
app.add_typer(judge.app, name="judge")
app.add_typer(drafter.app, name="drafter")
app.add_typer(report.app, name="report")
app.add_typer(dashboard.app)
app.add_typer(probes.app)


@app.callback()
def _root() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched from a hub
