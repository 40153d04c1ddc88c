"""The Drafter: `kimi-student drafter data` (the Worker's own answers and hidden states on tool-loop prompts)
and `drafter train` (a feature drafter distilled from them, or the data-only baseline). It drafts for
`eval --runner hf_local --draft-model DIR` and `bench/speculative.py --draft DIR`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kimi_student.cli.common import guarded, show_progress
from kimi_student.drafter.config import DIVERGENCES, DrafterTrainConfig

DEFAULT = DrafterTrainConfig()  # one place for the defaults: --help shows these

app = typer.Typer(
    help="The Drafter: a feature drafter for speculative decoding of the Worker.", no_args_is_help=True
)

Target = Annotated[
    str,
    typer.Option(
        help="The Worker the drafter drafts for: an HF checkpoint folder, or smollm2 (the embedded one)."
    ),
]


def _target(spec: str) -> Path:
    from kimi_student.backends.embedded import smollm2_folder

    return smollm2_folder() if spec == "smollm2" else Path(spec)


@app.command("data")
@guarded
def drafter_data(
    out: Annotated[Path, typer.Option(help="Folder for header.json and the shards.")] = Path("data/drafter"),
    model: Target = "smollm2",
    n: Annotated[
        int, typer.Option(help="contextual items of the train split (about 1.8 prompts each).")
    ] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the items.")] = 11,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer the Worker writes.")] = 64,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts decoded together.")] = 16,
    split: Annotated[
        str, typer.Option(help="train, or heldout (values no train item holds): a set to measure on.")
    ] = "train",
    answers: Annotated[
        str,
        typer.Option(
            help="worker: the Worker's own greedy answers (what the Drafter is distilled on); data: each "
            "item's answer as the dataset holds it, with the Worker's states over it (the data-only baseline's "
            "sequences: no decoding)."
        ),
    ] = "worker",
) -> None:
    """Decode the Worker greedily on the tool loop's prompts of `n` train items and store each prompt +
    answer with the Worker's final hidden states (fp16), in shards of 64 prompts. A killed run resumes at
    the first missing shard; the same settings give the same bytes."""
    from kimi_student.drafter.data import ANSWERS, write_data

    if n < 1:
        raise typer.BadParameter("--n must be at least 1")
    if split not in ("train", "heldout"):
        raise typer.BadParameter(f"--split must be train or heldout, got {split!r}")
    if answers not in ANSWERS:
        raise typer.BadParameter(f"--answers must be one of {', '.join(ANSWERS)}, got {answers!r}")
    head = write_data(
        out, _target(model), n, seed, max_new_tokens, batch_size, split, show_progress(), answers
    )
    typer.echo(f"{head['prompts']} prompts in {head['shards']} shards -> {out}")


@app.command("train")
@guarded
def drafter_train(
    data: Annotated[list[Path], typer.Option(help="`drafter data` folders (repeatable).")],
    out: Annotated[Path, typer.Option(help="The drafter's folder.")],
    model: Target = "smollm2",
    heldout: Annotated[
        list[Path] | None,
        typer.Option(help="`drafter data` folders of held-out items, for the log's accuracy."),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            help="kd: the Worker's states and distribution (the Drafter); ce: the data's tokens only."
        ),
    ] = DEFAULT.objective,
    steps: Annotated[int, typer.Option(min=1)] = DEFAULT.steps,
    lr: Annotated[float, typer.Option()] = DEFAULT.lr,
    kd_weight: Annotated[
        float, typer.Option(min=0.0, help="kd: the weight of the forward KL beside the states' smooth-L1.")
    ] = DEFAULT.kd_weight,
    noise: Annotated[
        float, typer.Option(min=0.0, help="Uniform noise on the input states, times their spread.")
    ] = DEFAULT.noise,
    divergence: Annotated[
        str,
        typer.Option(
            help="kd: forward_kl or tvd, from the Worker's next-token distribution to the drafter's."
        ),
    ] = DEFAULT.divergence,
    passes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Passes over each batch, each after the first reading the one before's predicted states "
            "(the k-th draft reads a state predicted k-1 times: 3 trains all of K = 3's).",
        ),
    ] = DEFAULT.passes,
    second: Annotated[
        float,
        typer.Option(min=0.0, help="Weight of each pass after the first (0: the first alone)."),
    ] = DEFAULT.second,
    prompt_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of the positions that predict the prompt's tokens, beside the answer's 1 (drafting "
            "only ever drafts answers; 0: answers only).",
        ),
    ] = DEFAULT.prompt_weight,
    seed: Annotated[int, typer.Option()] = DEFAULT.seed,
) -> None:
    """Train a feature drafter: one decoder layer reading the Worker's final hidden states, with the
    Worker's head cut to the data's vocabulary."""
    from kimi_student.drafter.train import train_drafter

    if objective not in ("kd", "ce"):
        raise typer.BadParameter(f"--objective must be kd or ce, got {objective!r}")
    if divergence not in DIVERGENCES:
        raise typer.BadParameter(f"--divergence must be one of {', '.join(DIVERGENCES)}, got {divergence!r}")
    cfg = DrafterTrainConfig(
        objective=objective,
        steps=steps,
        lr=lr,
        kd_weight=kd_weight,
        noise=noise,
        divergence=divergence,
        second=second,
        passes=passes,
        prompt_weight=prompt_weight,
        seed=seed,
    )
    res = train_drafter(_target(model), data, out, cfg, heldout, progress=show_progress())
    last = res["log"][-1]
    typer.echo(json.dumps(last))
    typer.echo(f"{res['steps']} steps on {res['sequences']} sequences, vocabulary {res['vocab']} -> {out}")
