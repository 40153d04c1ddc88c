"""The tool registry and the ToolBroker's fixtures: `kimi-student tools ...`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kimi_student.cli.common import fail, guarded

app = typer.Typer(help="The tool registry and the ToolBroker's fixtures.", no_args_is_help=True)


@app.command("list")
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


@app.command("schema")
@guarded
def tools_schema(name: Annotated[str, typer.Argument(help="Tool name, e.g. web.search")]) -> None:
    """Print one tool's JSON Schema (its `parameters`)."""
    from kimi_student.tools.registry import UnknownToolError, get_tool, registry

    try:
        typer.echo(json.dumps(get_tool(name).parameters, indent=2, ensure_ascii=False))
    except UnknownToolError:
        fail(f"unknown tool {name!r}; known: {', '.join(registry())}")


@app.command("record")
@guarded
def tools_record(
    calls: Annotated[Path, typer.Option(help="JSONL of {name, arguments} calls to record.")] = Path(
        "eval/tool_broker/record_calls.jsonl"
    ),
    sandbox: Annotated[
        Path, typer.Option(help="Sandbox folder the live tools run in (a copy is used).")
    ] = Path("eval/tool_broker/sandbox"),
    out: Annotated[Path, typer.Option(help="Fixture folder to write <tool>.jsonl into.")] = Path(
        "kimi_student/tools/fixtures"
    ),
) -> None:
    """Build fixtures by running the live tools (math.eval, read_file, file.write, repo.search) in a sandbox."""
    from kimi_student.jsonl import read_jsonl
    from kimi_student.outputs import check_outputs
    from kimi_student.tools.broker import record

    check_outputs({"--calls": calls, "--sandbox": sandbox}, {}, folders={"--out": out})
    counts = record(read_jsonl(calls), sandbox, out, source=calls)
    for name, n in sorted(counts.items()):
        typer.echo(f"{name}: {n} fixtures -> {out / (name + '.jsonl')}")
