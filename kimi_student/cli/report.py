"""Reports: `kimi-student report diff BASE NEW` (what changed between two runs, and whether it regressed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from kimi_student.cli.common import guarded

app = typer.Typer(help="Fingerprinted reports: compare two runs.", no_args_is_help=True)


def read_report(path: Path) -> dict[str, Any]:
    """A report as `eval`, `judge eval`, toy-e2e, worker-e2e and the benches write it: a header and figures."""
    from kimi_student.errors import InputError
    from kimi_student.eval.report_diff import report_metrics

    try:
        r = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(
            path, None, None, f"cannot read the report: {getattr(e, 'strerror', None) or e}"
        ) from None
    except json.JSONDecodeError as e:
        raise InputError(path, e.lineno, None, f"not JSON: {e.msg}") from None
    if not isinstance(r, dict) or not isinstance(r.get("header"), dict):
        raise InputError(path, None, "header", "not a report (a report holds a header and its figures)")
    if not report_metrics(r):
        raise InputError(path, None, "summary", "not a report: no summary, eval_summary or metric")
    return r


@app.command("diff")
@guarded
def report_diff(
    base: Annotated[
        Path, typer.Argument(help="The report to compare against (e.g. the committed baseline).")
    ],
    new: Annotated[Path, typer.Argument(help="The report of the run under review.")],
    tolerances: Annotated[
        Path | None,
        typer.Option(
            help="Judged metrics: better (higher|lower), tolerance. [default: configs/report_tolerances.yaml]"
        ),
    ] = None,
    allow_fingerprint_change: Annotated[
        bool,
        typer.Option(
            help="Compare even when dataset, registry, fixtures or tokenizer differ (the table names them)."
        ),
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the comparison here (JSON).")] = None,
    all_metrics: Annotated[
        bool, typer.Option("--all", help="Show every metric, not only the judged ones.")
    ] = False,
) -> None:
    """Metric by metric deltas between two reports, and the gates that passed in BASE and fail in NEW.

    A judged metric that moved the wrong way by more than its tolerance, or a lost gate, is a regression:
    exit 1; otherwise exit 0. Reports of different datasets, tool registries, fixtures or tokenizers (or of
    different kinds) measure different things: exit 2, unless --allow-fingerprint-change."""
    from kimi_student.eval.report_diff import DEFAULT_TOLERANCES, diff_reports, diff_table, load_tolerances
    from kimi_student.jsonl import write_json
    from kimi_student.outputs import check_outputs

    check_outputs({"BASE": base, "NEW": new}, {"--out": out})
    tol = load_tolerances(tolerances or DEFAULT_TOLERANCES)
    d = diff_reports(read_report(base), read_report(new), tol)
    if d["fingerprint_changes"] and not allow_fingerprint_change:
        for c in d["fingerprint_changes"]:
            typer.echo(f"error: not comparable: {c['key']} differs ({c['base']} -> {c['new']})", err=True)
        typer.echo("(--allow-fingerprint-change compares them anyway)", err=True)
        raise typer.Exit(2)
    if out:
        write_json(out, d)
    typer.echo(diff_table(d, everything=all_metrics))
    raise typer.Exit(1 if d["regression"] else 0)
