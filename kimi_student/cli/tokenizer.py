"""Tokenizers: `kimi-student tokenizer train | fingerprint`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kimi_student.cli.common import guarded

app = typer.Typer(
    help="Tokenizers: the embedded SmolLM2 one, or a small BPE trained here.", no_args_is_help=True
)


@app.command("train")
@guarded
def tokenizer_train(
    inp: Annotated[
        Path, typer.Option("--in", help="Dataset JSONL whose prompts and teacher texts to train on.")
    ],
    out: Annotated[Path, typer.Option(help="tokenizer.json to write.")],
    vocab_size: Annotated[int, typer.Option(min=300, help="Vocabulary size.")] = 2048,
) -> None:
    """Train a small byte-level BPE tokenizer on a dataset (deterministic)."""
    from kimi_student.data.dataset import read_dataset
    from kimi_student.outputs import check_outputs
    from kimi_student.tokenizer import train_bpe

    check_outputs({"--in": inp}, {"--out": out})
    _, items = read_dataset(inp)
    tok = train_bpe((t for it in items for t in (it["prompt"], it["teacher_text"])), out, vocab_size)
    typer.echo(f"trained BPE ({tok.tok.get_vocab_size()} tokens, {tok.fingerprint[:12]}) -> {out}")


@app.command("fingerprint")
@guarded
def tokenizer_fingerprint(
    spec: Annotated[str, typer.Argument(help="'smollm2' or a tokenizer.json path")],
) -> None:
    """Print a tokenizer's sha256 fingerprint."""
    from kimi_student.tokenizer import load_tokenizer

    typer.echo(load_tokenizer(spec).fingerprint)
