"""`kimi-student probes`: where in the network a student represents the process step it is writing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kimi_student.cli.common import fail, guarded, show_progress

app = typer.Typer()  # a top-level command: `kimi-student probes`


@app.command("probes")
@guarded
def probes_cmd(
    model: Annotated[
        list[Path],
        typer.Option(
            help="A student checkpoint (HF folder); repeat to compare, e.g. before and after distillation."
        ),
    ],
    data: Annotated[Path, typer.Option(help="Contextual dataset (gold conversations) to probe on.")],
    out: Annotated[
        Path, typer.Option(help="Folder for report.json, table.md, probes.png (and cache/).")
    ] = Path("reports/probes"),
    items: Annotated[int, typer.Option(min=2, help="The first N items of --data.")] = 120,
    heldout_share: Annotated[
        float, typer.Option(min=0.05, max=0.95, help="Share of the items held out from probe training.")
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="The train/held-out split's seed.")] = 0,
    dtype: Annotated[
        str, typer.Option(help="fp32, or bf16 (faster where the CPU has it; states stored FP16 either way).")
    ] = "fp32",
) -> None:
    """Linear probes on every layer's hidden states: the process step of each token the model writes (tool
    name, JSON arguments, integration span, other) and the tool of a call's tokens. Held-out accuracy and
    macro-F1 per layer, the majority-class baseline beside them; the states are cached, so a rerun (or a
    second --model) costs only what is new."""
    from kimi_student.outputs import check_outputs

    if dtype not in ("fp32", "bf16"):
        fail(f"--dtype: unknown {dtype!r} (known: fp32, bf16)")
    check_outputs({"--data": data, **{f"--model {m}": m for m in model}}, {}, folders={"--out": out})
    for m in model:
        if not (m / "config.json").is_file():
            fail(f"--model {m}: not a checkpoint folder (no config.json)")
    from kimi_student.probes.run import label, run_probes

    rep = run_probes(model, data, out, items, heldout_share, seed, dtype, show_progress())
    b = rep["baseline"]
    typer.echo(
        f"{rep['header']['examples']} examples ({rep['header']['heldout_examples']} held out), "
        f"{rep['counts']['heldout_tokens']} held-out tokens; majority class: step macro-F1 "
        f"{b['step']['macro_f1']:.4f}, tool macro-F1 {b['tool']['macro_f1']:.4f}"
    )
    for m in rep["models"]:
        s, t = m["best"]["step"], m["best"]["tool"]
        typer.echo(
            f"{label(m['model'])}: best step probe layer {s['layer']} (macro-F1 {s['macro_f1']:.4f}, "
            f"acc {s['accuracy']:.4f}); best tool probe layer {t['layer']} (macro-F1 {t['macro_f1']:.4f})"
        )
    typer.echo(f"report -> {out / 'report.json'}, {out / 'table.md'}, {out / 'probes.png'}")
