"""`kimi-student dashboard --reports DIR --out SITE`: every report under DIR as a static site."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from kimi_student.cli.common import guarded

app = typer.Typer()


@app.command("dashboard")
@guarded
def dashboard(
    reports: Annotated[
        Path, typer.Option(help="A folder of reports (searched recursively for *.json).")
    ] = Path("reports"),
    out: Annotated[Path, typer.Option(help="The site's folder (replaced as a whole).")] = Path("site"),
) -> None:
    """Build a static site of every report under --reports: the latest run of each kind, dataset and model with
    its gates; every metric over time (thresholds drawn); each gate's pass/fail history; a page per report
    (fingerprints, summary, gates, worst items). Eval, Judge, toy-e2e, worker-e2e and bench reports; files
    that are not reports are listed, not fatal. Opens with no network: open SITE/index.html."""
    from kimi_student.dashboard.site import build_site
    from kimi_student.errors import InputError
    from kimi_student.outputs import check_outputs

    if not reports.is_dir():
        raise InputError(reports, None, "--reports", "not a folder of reports")
    check_outputs({"--reports": reports}, {}, folders={"--out": out})
    if out.resolve() == reports.resolve() or reports.resolve() in out.resolve().parents:
        raise InputError(out, None, "--out", "the site must not be written inside the reports folder")
    t0 = time.perf_counter()
    runs, skipped = build_site(reports, out)
    kinds = ", ".join(f"{k} {sum(r.kind == k for r in runs)}" for k in sorted({r.kind for r in runs}))
    typer.echo(
        f"{len(runs)} reports ({kinds or 'none'}), {len(skipped)} other JSON files skipped -> "
        f"{out / 'index.html'} in {time.perf_counter() - t0:.2f} s"
    )
