"""The Worker end-to-end recipe (`kimi-student worker-e2e`): contextual dataset -> small student trained on
the gold conversations (loss on assistant turns only, train/examples.py) -> `eval --runner hf_local`
through the real tool loop and ToolBroker on held-out items -> the CAWS gates of configs/gates.yaml.

It reuses the toy recipe's parts: the run folder layout (`ToyRun`), the BPE trained on the training split
(here on whole conversations, digits split so numbers are copied digit by digit) and the student trainer.
The held-out items come from another generator seed; how many of their gold calls and answers also
occur in training is measured and reported (the generator's value pools are finite).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kimi_student.chat.prompt import item_messages
from kimi_student.data.contextual import generate, write_dataset
from kimi_student.data.extract import extracted
from kimi_student.errors import InputError
from kimi_student.eval.harness import run_eval
from kimi_student.eval.report import EvalPaths
from kimi_student.eval.runners.base import RunnerSpec
from kimi_student.eval.runners.options import RunnerOptions
from kimi_student.fingerprint import canonical_json
from kimi_student.jsonl import write_json, write_jsonl
from kimi_student.recipes.toy_e2e import fit_tokenizer, load_config, timed, torch_threads, train_student
from kimi_student.recipes.toy_run import ToyRun
from kimi_student.resources import config_path, shown_path
from kimi_student.tokenizer import load_tokenizer
from kimi_student.train.examples import conversation_turns

CONFIG = config_path("worker_e2e.yaml")
EXTRACT_TOKENIZER = "smollm2"  # the eval dataset's span tokenizer, as `make contextual-extract` uses
INT_KEYS = {
    "data": ("train_items", "heldout_items", "heldout_seed_offset", "bpe_vocab"),
    "decode": ("max_turns", "max_new_tokens", "batch_size"),
}


def read_config(path: Path) -> dict[str, Any]:
    """The config, each integer it needs checked before any work (exit 2 naming the key)."""
    cfg = load_config(path, ("data", "decode", "sizes", "train"))
    for section, keys in INT_KEYS.items():
        for k in keys:
            v = cfg[section].get(k)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "heldout_seed_offset" else 1):
                raise InputError(path, None, f"{section}.{k}", f"must be a positive integer, got {v!r}")
    return cfg


def conversation_text(item: dict[str, Any]) -> str:
    """An item's conversation as the student reads it through the chat template (`role: content` lines)."""
    msgs = item_messages(item, "request") + conversation_turns(item["teacher_text"])
    return "".join(f"{m['role']}: {m['content']}\n" for m in msgs)


def _calls_key(item: dict[str, Any]) -> str:
    return canonical_json(item["metadata"]["call_sequence"])


def overlap(train: list[dict[str, Any]], held: list[dict[str, Any]]) -> dict[str, Any]:
    """How much of the held-out split training already holds: items whose whole gold call sequence, or
    whose whole gold transcript, occurs in training (calls: items with at least one call)."""
    calls = {_calls_key(it) for it in train if it["metadata"]["call_sequence"]}
    texts = {it["teacher_text"] for it in train}
    with_calls = [it for it in held if it["metadata"]["call_sequence"]]
    return {
        "heldout_items_with_calls": len(with_calls),
        "heldout_call_sequence_in_train": sum(_calls_key(it) in calls for it in with_calls),
        "heldout_transcript_in_train": sum(it["teacher_text"] in texts for it in held),
    }


def prepare_data(run: ToyRun, d: dict[str, Any], seed: int) -> dict[str, Any]:
    """Training dataset (seed) and held-out dataset (seed + heldout_seed_offset), the latter extracted for
    the eval; both with their fixtures beside them."""
    hseed = seed + int(d["heldout_seed_offset"])
    header, train, fx = generate(int(d["train_items"]), seed)
    write_dataset(run.train_jsonl, header, train, fx)
    hheader, held, hfx = generate(int(d["heldout_items"]), hseed)
    raw = run.heldout_jsonl.with_name("heldout_gen.jsonl")
    fx_dir = write_dataset(raw, hheader, held, hfx)
    tok = load_tokenizer(EXTRACT_TOKENIZER)
    hheader = {
        **hheader,
        "fixtures_dir": fx_dir.name,
        "tokenizer": EXTRACT_TOKENIZER,
        "tokenizer_fingerprint": tok.fingerprint,
    }
    write_jsonl(run.heldout_jsonl, [hheader, *extracted(held, tok)])
    return {"train": train, "heldout": held, "heldout_seed": hseed}


def eval_options(checkpoint: str, e: dict[str, Any]) -> RunnerOptions:
    return RunnerOptions(
        model=checkpoint,
        prompt_wrapper="request",
        max_turns=int(e["max_turns"]),
        max_new_tokens=int(e["max_new_tokens"]),
        batch_size=int(e["batch_size"]),
    )


def eval_command(run: ToyRun, o: RunnerOptions) -> str:
    """The CLI line that runs the same eval again."""
    return (
        f"kimi-student eval --runner hf_local --model {o.model} --in {run.heldout_jsonl} "
        f"--out {run.root / 'eval_results.jsonl'} --report {run.root / 'eval_report.json'} "
        f"--prompt-wrapper {o.prompt_wrapper} --max-turns {o.max_turns} "
        f"--max-new-tokens {o.max_new_tokens} --batch-size {o.batch_size}"
    )


def run_worker_e2e(
    out: str | Path,
    seed: int = 0,
    config: str | Path = CONFIG,
    max_steps: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Run the whole pipeline into `out` and return the report (also written to out/report.json); the
    eval's own report and per-item results are out/eval_report.json and out/eval_results.jsonl."""
    run, config = ToyRun.at(out), Path(config)
    cfg = read_config(config)
    d, steps = cfg["data"], {}
    t_all = time.perf_counter()
    with timed(steps, "dataset"):
        data = prepare_data(run, d, seed)
    ov = overlap(data["train"], data["heldout"])
    log(f"dataset: {len(data['train'])} train, {len(data['heldout'])} held-out items; overlap {ov}")
    with timed(steps, "tokenizer"):
        texts = (conversation_text(it) for it in data["train"])
        tok_fp = fit_tokenizer(texts, run, int(d["bpe_vocab"]), split_digits=bool(d.get("split_digits")))
    with timed(steps, "train"), torch_threads(cfg.get("threads", 1)):
        tr = train_student(config, run, max_steps, size=str(cfg.get("size", "worker")), progress=progress)
    log(
        f"train: {tr['params'] / 1e6:.2f}M params, {tr['steps']} steps, loss {tr['loss_first']:.3f} -> "
        f"{tr['loss_last']:.3f}, {tr['tokens_per_s']:.0f} tokens/s ({steps['train']:.1f} s)"
    )
    opts = eval_options(str(tr["checkpoint"]), cfg["decode"])
    log(f"eval: {eval_command(run, opts)}")
    paths = EvalPaths(run.root / "eval_results.jsonl", run.root / "eval_report.json")
    with timed(steps, "eval"), torch_threads(cfg.get("threads", 1)):
        rep = run_eval(
            run.heldout_jsonl, RunnerSpec("hf_local", None, opts), paths, fresh=True, progress=progress
        )
    steps["total"] = round(time.perf_counter() - t_all, 3)
    report = {
        "header": {"config": shown_path(config), "seed": seed, "tokenizer_fingerprint": tok_fp},
        "steps_seconds": steps,
        "data": {
            "train_items": len(data["train"]),
            "heldout_items": len(data["heldout"]),
            "heldout_seed": data["heldout_seed"],
            **ov,
        },
        "train": tr,
        "eval_command": eval_command(run, opts),
        "eval_summary": rep["summary"],
        "gates": rep["gates"],
        "passed": rep["passed"],
    }
    write_json(run.report, report)
    return report
