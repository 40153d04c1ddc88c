"""The Judge: `kimi-student judge data` (the dataset, labelled by the CAWS rule oracle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kimi_student.cli.common import guarded, show_progress

app = typer.Typer(help="The CAWS Judge: its dataset (labelled by the rule oracle).", no_args_is_help=True)


@app.command("data")
@guarded
def judge_data(
    out: Annotated[Path, typer.Option(help="Folder for train.jsonl, heldout.jsonl and stats.json.")] = Path("data/judge"),
    train: Annotated[int, typer.Option(help="Training single cases (pairs: half as many, each in both orders).")] = 4000,
    heldout: Annotated[int, typer.Option(help="Held-out single cases (pairs as above); >= 600 for the gates.")] = 600,
    seed: Annotated[int, typer.Option(help="Seed of both splits (each split draws its own stream).")] = 0,
) -> None:
    """Build the Judge dataset: single cases (a change -> PASS / FAIL / WAIVER_REQUIRED and its violated
    clauses) and pairs (two changes for one spec -> a, b or tie), every label from `caws check`'s oracle.
    Held-out cases use module names, file names, rationales and wordings no training case uses.

    Exit 1 when the set is unfit to train on: a status under 25% or a clause under 15% of cases, winners off
    45/45/10 by more than 3 points, a pair missing an order, or a shortcut (candidate length, bag of words
    over the candidate's own text) above 0.60 pairwise accuracy on held-out pairs. stats.json says which."""
    from kimi_student.arbiter.judge_data import write_dataset
    from kimi_student.outputs import check_outputs

    if train < 2 or heldout < 2:
        raise typer.BadParameter("--train and --heldout need at least 2 cases each")
    check_outputs({}, {}, folders={"--out": out})
    stats = write_dataset(out, seed, train, heldout, progress=show_progress())
    for split in ("train", "heldout"):
        s = stats[split]
        shares = " ".join(f"{k} {v:.3f}" for k, v in {**s["status"], **s["clauses"]}.items())
        typer.echo(f"{split}: {s['singles']} single cases, {s['pairs']} pair records; {shares}; winners "
                   + " ".join(f"{k} {v:.3f}" for k, v in s["winners"].items()))
    b = stats["baselines"]
    typer.echo(f"shortcut baselines on held-out pairs: length ({b['length']['rule']}) "
               f"{b['length']['pairwise_accuracy']:.3f}, bag of words {b['bag_of_words']['pairwise_accuracy']:.3f} "
               "(each must stay <= 0.60)")
    failed = [k for k, ok in stats["checks"].items() if not ok]
    typer.echo(f"-> {out}/train.jsonl, heldout.jsonl, stats.json; checks: "
               + ("all pass" if not failed else "FAILED " + ", ".join(failed)))
    if failed:
        typer.echo(json.dumps({k: stats["checks"][k] for k in failed}), err=True)
        raise typer.Exit(1)
