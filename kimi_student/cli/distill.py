"""Distillation: `kimi-student kd-mix` (teacher answers) and `kimi-student train` (the student)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kimi_student.cli.common import fail, guarded, show_progress

app = typer.Typer()  # its commands sit at the top level: `kimi-student kd-mix`


@app.command("kd-mix")
@guarded
def kd_mix(
    teacher: Annotated[
        str,
        typer.Option(
            help="smollm2 (embedded, default), hf:<folder|file.gguf>, or "
            "http(s)://host or http(s)://host/v1 (OpenAI-compatible; a user:password in the URL "
            "is sent, never written)."
        ),
    ] = "smollm2",
    prompts: Annotated[
        Path, typer.Option(help="Contextual dataset or prompt JSONL ({id, prompt|messages}).")
    ] = Path("data/contextual.jsonl"),
    out: Annotated[Path, typer.Option(help="KD dataset JSONL (shards and cache go beside it).")] = Path(
        "data/kd_mix.jsonl"
    ),
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N prompts.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    top_logprobs: Annotated[int, typer.Option(min=0, max=100, help="Top-k logprobs to keep (0: none).")] = 20,
    seed: Annotated[int, typer.Option()] = 0,
    model: Annotated[str | None, typer.Option(help="Model name sent to an HTTP teacher.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Parallel requests to an HTTP teacher.")] = 8,
    max_retries: Annotated[int, typer.Option(min=0, help="Retries on 429/5xx/timeouts.")] = 6,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per HTTP request.")] = 120.0,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            help="Env var holding the API key (default: "
            "KIMI_STUDENT_API_KEY, KIMI_API_KEY, MOONSHOT_API_KEY, "
            "OPENAI_API_KEY); one that is not set is refused."
        ),
    ] = None,
    system: Annotated[bool, typer.Option(help="Prepend the tool-use system prompt to plain prompts.")] = True,
    score_gold: Annotated[
        bool,
        typer.Option(
            "--score-gold",
            help="Score, don't generate: each contextual item's gold teacher_text, as the exact "
            "multi-turn tool-loop sequence the student trains on (teacher's tokenizer), goes through "
            "one teacher forward; the top-k logprobs (temperature 1) are kept at the assistant-turn "
            "positions only. Needs smollm2 or hf: (the student must share its tokenizer). Train with "
            "`train --kd OUT` (not --data too: the gold text would count twice). The generation options "
            "(--max-new-tokens, --temperature, --top-p, --seed, --system) do not apply; see --wrapper.",
        ),
    ] = False,
    wrapper: Annotated[
        str | None,
        typer.Option(
            help="--score-gold: the prompt wrapper, as the trainer uses it: request (default; train "
            "config system_prompt: false) or system (system_prompt: true)."
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="--score-gold: auto (default: bf16 where the CPU has it, else fp32), bf16, no."),
    ] = None,
) -> None:
    """Build the KD dataset: ask the teacher every prompt, keep its text and top-k logprobs.

    With --score-gold, the teacher scores the gold conversations instead (teacher forcing), for
    distilling multi-turn tool loops: records say "kind": "teacher_forced".
    Answers are cached by request sha256 beside the output: rerunning (also after a crash or kill)
    asks only what is missing. Failed requests are recorded with their reason. Exit 1 if any failed.
    """
    from kimi_student.data.kd_mix import build_kd_mix, load_prompts, prompt_set_sha256, with_decoding
    from kimi_student.outputs import check_outputs
    from kimi_student.teachers import make_teacher
    from kimi_student.teachers.base import Decoding

    check_outputs({"--prompts": prompts}, {"--out": out}, siblings={"--out": (".logprobs", ".cache")})
    if score_gold:
        _score_gold(teacher, prompts, out, limit, top_logprobs, wrapper or "request", precision or "auto")
    if wrapper is not None or precision is not None:
        fail("--wrapper and --precision apply to --score-gold only")
    reqs = load_prompts(prompts, system=system)[:limit]
    reqs = with_decoding(reqs, Decoding(max_new_tokens, temperature, top_p, top_logprobs, seed))
    opts: dict[str, Any] = {"top_k": top_logprobs or 20}
    if teacher.startswith(("http://", "https://")):
        from kimi_student.tokenizer import load_tokenizer

        opts.update(
            model=model,
            concurrency=concurrency,
            max_retries=max_retries,
            timeout_s=timeout,
            api_key_env=api_key_env,
            vocab=load_tokenizer("smollm2").tok.get_vocab(),
        )
    t = make_teacher(teacher, **opts)
    _summary(build_kd_mix(t, reqs, out, prompt_set_sha256(reqs), progress=show_progress()), out, "answered")


def _score_gold(
    teacher: str, prompts: Path, out: Path, limit: int | None, top_k: int, wrapper: str, precision: str
) -> None:
    """`kd-mix --score-gold`: refusals first, then the sequences (teacher's tokenizer), then the model."""
    from functools import partial

    from kimi_student.chat.prompt import WRAPPERS
    from kimi_student.teachers.hf_local import SCORING_PRECISIONS
    from kimi_student.train.teacher_forced import score_gold

    if not (teacher == "smollm2" or teacher.startswith("hf:")):
        fail("--score-gold needs an in-process teacher (smollm2 or hf:<folder|file.gguf>)")
    if not top_k:
        fail("--score-gold keeps top-k logprobs: --top-logprobs must be at least 1")
    if wrapper not in WRAPPERS:
        fail(f"--wrapper: unknown {wrapper!r} (known: {', '.join(WRAPPERS)})")
    if precision not in SCORING_PRECISIONS:
        fail(f"--precision: unknown {precision!r} (known: {', '.join(SCORING_PRECISIONS)})")
    echo = partial(typer.echo, err=True)
    header = score_gold(
        teacher,
        prompts,
        out,
        wrapper=wrapper,
        top_k=top_k,
        precision=precision,
        limit=limit,
        progress=show_progress(),
        log=echo,
    )
    if not header["from_cache"]:
        tokens, took = header["sequence_tokens"], header["seconds"]
        name = "fp32" if header["precision"] == "no" else header["precision"]
        echo(f"{tokens} sequence tokens in {took:.1f} s: {tokens / took:.0f} tokens/s ({name})")
    _summary(header, out, "scored")


def _summary(header: dict[str, Any], out: Path, verb: str) -> None:
    bpt = header["logprob_bytes_per_token"]
    typer.echo(
        f"{header['ok']}/{header['records']} {verb} ({header['from_cache']} from cache"
        + (f", {header['repeated']} repeated prompts asked once" if header["repeated"] else "")
        + "), "
        f"{header['failed']} failed, {header['logprob_tokens']} logprob tokens"
        + (f" at {bpt:.0f} bytes/token" if bpt else "")
        + f" -> {out}"
    )
    raise typer.Exit(1 if header["failed"] else 0)


def loss_terms(text: str) -> dict[str, float]:
    """`--loss kl_forward=1,temperature=2` as the mapping a config's train.loss holds."""
    from dataclasses import fields

    from kimi_student.train.config import LossWeights

    known = [f.name for f in fields(LossWeights)]
    terms: dict[str, float] = {}
    for part in text.split(","):
        name, eq, value = (x.strip() for x in part.partition("="))
        try:
            weight = float(value) if eq and name else None
        except ValueError:
            weight = None
        if weight is None:
            fail(f"--loss: {part.strip()!r} is not TERM=WEIGHT (e.g. kl_forward=1)")
        if name not in known:
            fail(f"--loss: unknown term {name!r} (known: {', '.join(known)})")
        terms[name] = weight
    return terms


@app.command("train")
@guarded
def train_cmd(
    config: Annotated[str, typer.Option(help="worker, judge, drafter or a YAML path.")] = "worker",
    size: Annotated[
        str, typer.Option(help="A size under `sizes:` in the config (toy, small, full).")
    ] = "toy",
    data: Annotated[
        Path | None, typer.Option(help="Contextual dataset (gold text, loss ce_ground_truth).")
    ] = None,
    kd: Annotated[Path | None, typer.Option(help="KD mix (teacher text + top-k logprobs).")] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            help="In-process teacher for full-logit KD: smollm2 or an "
            "HF folder (same tokenizer as the student)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints/, train_log.jsonl, final/.")] = Path(
        "runs/worker-toy"
    ),
    max_steps: Annotated[int | None, typer.Option(min=1, help="Override the config's max_steps.")] = None,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 only where the hardware has it), bf16, fp16, no.")
    ] = "auto",
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N examples.")] = None,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Discard an unfinished run's checkpoints and log in --out and start over "
            "(a finished run, with final/, is refused).",
        ),
    ] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Start from this trained checkpoint (an HF folder: every layer, its architecture) instead of "
            "the config's init: fine-tuning, e.g. QAT of a trained Worker."
        ),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(min=0.0, help="Override the config's peak learning rate.")
    ] = None,
    qat: Annotated[
        str | None,
        typer.Option(
            help="Quantization-aware training on the weights `export coreml --weights` will store: int8, "
            "int4 or int4emb8 (overrides the config's train.qat). Export the result with the same --weights."
        ),
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option(
            help="Replace the config's loss terms: TERM=WEIGHT[,TERM=WEIGHT...] (the keys of a config's "
            "train.loss). QAT as self-distillation: --init-from M --teacher M --loss kl_forward=1.",
        ),
    ] = None,
) -> None:
    """Train a student with the config's losses; resumes from the run folder's latest checkpoint.

    The final checkpoint (out/final) is an HF Llama folder that AutoModelForCausalLM loads.
    A non-finite loss stops the run with exit code 3 and keeps the last good checkpoint.
    A checkpoint that does not match its sealed manifest, or a run folder with a log but nothing to
    resume from, is refused with exit code 2 (--fresh starts over).
    """
    from kimi_student.models.student import continue_from, load_spec
    from kimi_student.outputs import check_outputs
    from kimi_student.train.config import PRECISIONS, QAT_WEIGHTS, TrainConfig

    if data is None and kd is None:
        fail("train needs --data and/or --kd")
    check_outputs(
        {"--config": config, "--data": data, "--kd": kd, "--teacher": teacher}, {}, folders={"--out": out}
    )
    if qat is not None and qat not in QAT_WEIGHTS:
        fail(f"--qat: unknown {qat!r} (known: {', '.join(QAT_WEIGHTS)})")
    if precision not in PRECISIONS:
        fail(f"--precision: unknown {precision!r} (known: {', '.join(PRECISIONS)})")
    spec = load_spec(config, size)
    if init_from is not None:
        spec = continue_from(spec, init_from)
    overrides = {
        "lr": lr,
        "qat": {"weights": qat} if qat else None,
        "loss": loss_terms(loss) if loss else None,
    }
    spec.train = {**spec.train, **{k: v for k, v in overrides.items() if v is not None}}
    TrainConfig.from_spec(spec, max_steps=max_steps)  # a bad config is refused before torch is even loaded
    from kimi_student.train.checkpoint import RunPaths, discard
    from kimi_student.train.trainer import TrainingError, train

    if fresh:
        for gone in discard(RunPaths(out)):
            typer.echo(f"--fresh: discarded {gone}", err=True)
    try:
        res = train(
            spec,
            out,
            data=str(data) if data else None,
            kd=str(kd) if kd else None,
            teacher=teacher,
            max_steps=max_steps,
            precision=precision,
            progress=show_progress(),
            limit=limit,
        )
    except TrainingError as e:
        fail(str(e), code=3)
    if res["resumed_at"]:
        typer.echo(f"resumed at step {res['resumed_at']} from {out / 'checkpoints'}", err=True)
    h = res["history"]
    typer.echo(
        f"trained {spec.role}/{spec.size} ({spec.n_params / 1e6:.1f}M params, {res['precision']}) "
        f"{res['steps']} steps: loss {h[0]['loss']:.4f} -> {h[-1]['loss']:.4f}, "
        f"{res['tokens_per_s']:.0f} tokens/s -> {res['final']}"
    )
