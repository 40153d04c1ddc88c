"""CAWS governance: `kimi-student caws check` (the rule oracle on a real change) and `caws schema`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from kimi_student.cli.common import fail, guarded

app = typer.Typer(
    help="CAWS governance: rule a change against its working spec, tier policy, evidence and waivers.",
    no_args_is_help=True,
)


@app.command("check")
@guarded
def caws_check(
    spec: Annotated[
        Path, typer.Option(help="The working spec (YAML or JSON), e.g. .caws/working-spec.yaml.")
    ],
    diff: Annotated[
        Path | None, typer.Option(help="A unified diff file (`git diff` output); '-' reads stdin.")
    ] = None,
    git: Annotated[
        str | None,
        typer.Option(
            "--git",
            help="Read the change from git instead: a commit (against its first parent) or BASE..HEAD.",
        ),
    ] = None,
    repo: Annotated[Path, typer.Option(help="The repository --git reads.")] = Path("."),
    policy: Annotated[
        Path | None,
        typer.Option(help="Tier policy (.caws/policy.yaml); default: the packaged configs/caws_policy.yaml."),
    ] = None,
    evidence: Annotated[
        Path | None, typer.Option(help="Evidence manifest (tests, lint, coverage, acceptance).")
    ] = None,
    waiver: Annotated[
        list[Path] | None,
        typer.Option(
            help="A waiver file the change carries (repeat the option for more; a file may hold a list)."
        ),
    ] = None,
    rationale: Annotated[
        str | None, typer.Option(help="Why the change is made; default with --git: its commit message(s).")
    ] = None,
    commit: Annotated[
        str | None,
        typer.Option(
            help="The change's commit, compared with the evidence's; default with --git: the head commit."
        ),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            help="Check time, ISO-8601 with zone (waiver expiry); default: the clock. Fix it for reproducible verdicts."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the verdict JSON here (atomically).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the verdict JSON instead of the summary.")
    ] = False,
) -> None:
    """Rule one change: PASS (exit 0), FAIL (exit 1) or WAIVER_REQUIRED (exit 3: it merges only with the
    waivers the verdict names). Bad input exits 2. Example:

        kimi-student caws check --spec .caws/working-spec.yaml --git HEAD --evidence evidence.yaml --now 2026-12-01T00:00:00Z
    """
    from kimi_student.arbiter.diff import parse_diff
    from kimi_student.arbiter.documents import (
        default_policy,
        load_evidence,
        load_policy,
        load_spec,
        load_waivers,
        parse_time,
    )
    from kimi_student.arbiter.oracle import Change, check
    from kimi_student.arbiter.verdict import EXIT_CODES
    from kimi_student.jsonl import write_json

    if (diff is None) == (git is None):
        fail("give exactly one of --diff FILE and --git REV")
    try:
        at = parse_time(now) if now else datetime.now(timezone.utc)
    except ValueError as e:
        fail(f"--now: {e}")
    if git is not None:
        from kimi_student.arbiter.git import read_change

        change = read_change(repo, git)
        text, source = change.diff, f"git diff {git}"
        rationale = change.rationale if rationale is None else rationale
        commit = change.commit_sha if commit is None else commit
    else:
        assert diff is not None
        if str(diff) == "-":
            import sys

            text, source = sys.stdin.read(), "<stdin>"
        else:
            try:
                text, source = diff.read_text(encoding="utf-8", errors="surrogateescape"), str(diff)
            except OSError as e:
                fail(f"{diff}: cannot read: {e.strerror or e}")
    the_spec = load_spec(spec)
    the_policy = load_policy(policy) if policy else default_policy()
    if the_spec.risk_tier not in the_policy.tiers:
        fail(f"{policy}: risk_tiers: no tier {the_spec.risk_tier} for spec {the_spec.id}")
    waivers = tuple(w for p in (waiver or []) for w in load_waivers(p))
    verdict = check(
        Change(
            parse_diff(text, source),
            the_spec,
            the_policy,
            load_evidence(evidence) if evidence else None,
            waivers,
            rationale or "",
            commit,
        ),
        at,
    )
    body = verdict.to_json()
    if out is not None:
        write_json(out, body)
    if as_json:
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        typer.echo(f"{body['status']}  {the_spec.id} (risk tier {the_spec.risk_tier})  {body['verdict_id']}")
        b = body["budget"]
        typer.echo(
            f"  budget: {b['files_changed']}/{b['max_files']} files, {b['lines_added']}/{b['max_loc']} lines added"
        )
        for f in body["findings"]:
            typer.echo(f"  {f['disposition']:<8} {f['clause']:<16} {f['rule']}: {f['detail']}")
        typer.echo(f"  {body['rationale']}")
    raise typer.Exit(EXIT_CODES[verdict.status])


@app.command("schema")
@guarded
def caws_schema(
    name: Annotated[str, typer.Argument(help="working_spec | tier_policy | waiver | evidence | verdict")],
) -> None:
    """Print one CAWS JSON Schema."""
    from kimi_student.arbiter.documents import SCHEMAS, schema

    if name not in SCHEMAS:
        fail(f"unknown schema {name!r}; known: {', '.join(SCHEMAS)}")
    typer.echo(json.dumps(schema(name), indent=2, ensure_ascii=False))
