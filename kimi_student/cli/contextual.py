"""The contextual dataset: `kimi-student contextual gen | extract | verify`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from kimi_student.cli.common import fail, guarded

app = typer.Typer(help="The contextual tool-use dataset: gen -> extract -> verify.", no_args_is_help=True)


class Split(str, Enum):
    train = "train"
    heldout = "heldout"


MAX_ITEMS = 10_000_000  # a dataset is built in memory: 10M items is already tens of GB


@app.command("gen")
@guarded
def contextual_gen(
    out: Annotated[Path, typer.Option(help="Dataset JSONL to write.")] = Path("data/contextual.jsonl"),
    n: Annotated[int, typer.Option(min=1, help=f"Number of items (at most {MAX_ITEMS:,}).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives a byte-identical dataset.")] = 0,
    split: Annotated[
        Split,
        typer.Option(help="train, or heldout: values (names, paths, numbers, ...) no training set holds."),
    ] = Split.train,
) -> None:
    """Generate a stratified contextual dataset and the fixtures of every call it makes.

    Fixtures go to <out>.fixtures/ beside the dataset; the header points at them. A heldout set draws only
    values a train set never draws (DESIGN.md "Held-out split"); check it with verify --disjoint-from.
    """
    from kimi_student.data.contextual import generate, write_dataset
    from kimi_student.jsonl import whole_process_data
    from kimi_student.outputs import check_outputs

    if n > MAX_ITEMS:  # the project's one line, not Typer's usage box
        fail(f"--n {n}: at most {MAX_ITEMS:,} items (a dataset is built in memory)")
    check_outputs({}, {"--out": out}, siblings={"--out": (".fixtures",)})
    with whole_process_data():
        header, items, fixtures = generate(n, seed, split.value)
        fx_dir = write_dataset(out, header, items, fixtures)
    typer.echo(f"wrote {len(items)} items to {out} and {len(fixtures)} fixtures to {fx_dir}/")


@app.command("extract")
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
    from itertools import chain

    from kimi_student.data.dataset import read_dataset
    from kimi_student.data.extract import extracted
    from kimi_student.jsonl import whole_process_data, write_jsonl
    from kimi_student.outputs import check_outputs
    from kimi_student.tokenizer import load_tokenizer

    check_outputs({"--in": inp, "--tokenizer": tokenizer}, {"--out": out})
    with whole_process_data():
        header, items = read_dataset(inp)
        tok = load_tokenizer(tokenizer)
        header = {**header, "tokenizer": tokenizer, "tokenizer_fingerprint": tok.fingerprint}
        if header.get("fixtures_dir"):  # keep pointing at the same fixture folder from the new location
            header["fixtures_dir"] = os.path.relpath(
                (inp.parent / header["fixtures_dir"]).resolve(), out.parent.resolve()
            )
        # Each row is written as it is worked out, while the tokenizer encodes the next batches.
        write_jsonl(out, chain([header], extracted(items, tok)))
    typer.echo(f"extracted spans for {len(items)} items with {tokenizer} ({tok.fingerprint[:12]}) -> {out}")


@app.command("verify")
@guarded
def contextual_verify(
    inp: Annotated[Path, typer.Option("--in", help="Dataset JSONL (extracted, for token checks).")] = Path(
        "data/contextual_final.jsonl"
    ),
    report: Annotated[Path, typer.Option(help="Verify report JSON to write.")] = Path(
        "eval/reports/contextual_verify.json"
    ),
    tokenizer: Annotated[str | None, typer.Option(help="Defaults to the dataset's own tokenizer.")] = None,
    disjoint_from: Annotated[
        Path | None,
        typer.Option(
            help="A training set: fail if any value of a --in item's calls or results occurs in it."
        ),
    ] = None,
) -> None:
    """Check calls (JSON, schema, fixtures, derivable), spans (bounds, bytes, tokens), CAWS header, privacy;
    print coverage. With --disjoint-from TRAIN, check --in as a held-out set: none of its values in TRAIN.

    Exit 0 when every check holds, 1 when a check failed, 2 on bad input.
    """
    from kimi_student.data.dataset import dataset_fixture_dirs, read_dataset
    from kimi_student.data.verify import verify
    from kimi_student.jsonl import whole_process_data, write_json
    from kimi_student.outputs import check_outputs
    from kimi_student.tokenizer import load_tokenizer
    from kimi_student.tools.broker import ToolBroker

    check_outputs(
        {"--in": inp, "--tokenizer": tokenizer, "--disjoint-from": disjoint_from}, {"--report": report}
    )
    with whole_process_data():
        header, items = read_dataset(inp)
        train = read_dataset(disjoint_from)[1] if disjoint_from else None
        spec = tokenizer or header.get("tokenizer")
        tok = load_tokenizer(spec) if spec else None
        broker = ToolBroker.from_folders(dataset_fixture_dirs(inp, header))
        rep = verify(header, items, broker, tok, train)
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
    for leak in rep.get("heldout_leaks", [])[:5]:
        typer.echo(f"verify: held-out value in {disjoint_from}: {leak}", err=True)
    raise typer.Exit(1)
