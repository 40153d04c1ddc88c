"""The end-to-end recipes: `kimi-student toy-e2e` and `kimi-student worker-e2e`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from kimi_student.cli.common import guarded, show_progress
from kimi_student.resources import config_path

TOY_CONFIG = config_path("toy_e2e.yaml")  # recipes.toy_e2e.CONFIG, without importing the recipe
WORKER_CONFIG = config_path("worker_e2e.yaml")  # recipes.worker_e2e.CONFIG
app = typer.Typer()  # its commands sit at the top level: `kimi-student toy-e2e`


@app.command("toy-e2e")
@guarded
def toy_e2e_cmd(
    out: Annotated[
        Path, typer.Option(help="Run folder: data/, tokenizer/, run/, coreml/, report.json.")
    ] = Path("runs/toy-e2e"),
    shapes: Annotated[
        str, typer.Option(help="Sequence lengths, one package each (64,128,256: the multi run).")
    ] = "128",
    seed: Annotated[int, typer.Option(help="Dataset, split and training seed.")] = 0,
    config: Annotated[
        Path, typer.Option(help="Toy pipeline config.", show_default="packaged configs/toy_e2e.yaml")
    ] = TOY_CONFIG,
    items: Annotated[int | None, typer.Option(min=1, help="Contextual items to generate (config).")] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Student training steps (config; the teacher keeps its own).")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Also copy the report JSON here.")] = None,
) -> None:
    """Toy end-to-end: contextual dataset -> tiny student -> ExportedProgram -> Core ML per shape -> numpy
    MIL executor -> greedy decode -> tool-span micro-F1 and gates.

    Exit 0 when every gate passes (or warns), 1 when a gate fails, 2 on bad input.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (README: one thread)
    from kimi_student.outputs import check_outputs
    from kimi_student.recipes.config import load_config

    check_outputs({"--config": config}, {"--report": report}, folders={"--out": out})
    load_config(config)  # a bad config is refused before the recipe's imports (torch, coremltools) load
    from kimi_student.eval.gates import gate_table
    from kimi_student.export.torch_export import parse_shapes
    from kimi_student.jsonl import write_json
    from kimi_student.recipes.toy_e2e import run_toy_e2e, summary_lines

    rep = run_toy_e2e(out, tuple(parse_shapes(shapes)), seed, config, items, steps, log=typer.echo)
    if report:
        write_json(report, rep)
    for line in summary_lines(rep):
        typer.echo(line)
    typer.echo(f"{'PASS' if rep['passed'] else 'FAIL'}  report -> {report or out / 'report.json'}")
    typer.echo(gate_table(rep["gates"]))
    raise typer.Exit(0 if rep["passed"] else 1)


@app.command("worker-e2e")
@guarded
def worker_e2e_cmd(
    out: Annotated[
        Path,
        typer.Option(
            help="Run folder: data/, teacher/, run/, eval_results.jsonl, eval_report.json, report.json."
        ),
    ] = Path("runs/worker-e2e"),
    seed: Annotated[
        int, typer.Option(help="Training data, held-out (split heldout, same seed) and training seed.")
    ] = 0,
    config: Annotated[
        Path, typer.Option(help="Worker pipeline config.", show_default="packaged configs/worker_e2e.yaml")
    ] = WORKER_CONFIG,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Student training steps (config; the teacher keeps its own).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Stop after this stage: dataset, teacher, kd-mix or student (e.g. teacher: the fine-tuned "
            "SmolLM2-135M alone, a Worker for `drafter data`); report.json holds the stages run, nothing "
            "gated, exit 0."
        ),
    ] = None,
) -> None:
    """Worker end-to-end: contextual dataset -> teacher (SmolLM2-135M fine-tuned on the gold conversations,
    loss on the assistant turns) -> kd-mix --score-gold (the teacher's top-k at every assistant position) ->
    student (the config's init, distilled on the KD mix) -> `eval --runner hf_local` through the tool loop
    on held-out items -> every gate of configs/gates.yaml -> the student as Core ML (INT8 weights, FP16
    compute, a stateful decoder) and, on the config's `parity` items, `eval --runner coreml` (the MIL
    executor) and `eval --runner openai_http` (the student behind `transformers serve` on 127.0.0.1), each
    with integration F1 parity to hf_local on the same items.

    Exit 0 when every gate passes (each parity runner's too, where evaluated), 1 when one fails, 2 on bad
    input.
    """
    from kimi_student.eval.gates import gate_table
    from kimi_student.outputs import check_outputs
    from kimi_student.recipes.worker_e2e import STAGES, run_worker_e2e

    if until is not None and until not in STAGES:
        raise typer.BadParameter(f"--until must be one of {', '.join(STAGES)}, got {until!r}")
    check_outputs({"--config": config}, {}, folders={"--out": out})
    rep = run_worker_e2e(out, seed, config, steps, progress=show_progress(), log=typer.echo, until=until)
    typer.echo("steps: " + "  ".join(f"{k} {v:.1f}s" for k, v in rep["steps_seconds"].items()))
    if until is not None:
        typer.echo(f"stopped after {until}, nothing gated  report -> {out / 'report.json'}")
        raise typer.Exit(0)
    typer.echo(f"{'PASS' if rep['passed'] else 'FAIL'}  report -> {out / 'report.json'}")
    typer.echo(gate_table(rep["gates"]))
    raise typer.Exit(0 if rep["passed"] else 1)
