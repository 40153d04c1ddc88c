"""The Worker end-to-end recipe (`kimi-student worker-e2e`): contextual dataset -> small student trained on
the gold conversations (loss on assistant turns only, train/examples.py) -> `eval --runner hf_local`
through the real tool loop and ToolBroker on held-out items -> the CAWS gates of configs/gates.yaml.

It reuses the toy recipe's parts: the run folder layout (`ToyRun`), the BPE trained on the training split
(here on whole conversations, digits split so numbers are copied digit by digit) and the student trainer.
The held-out items are `contextual gen --split heldout` (values no training item holds); the recipe checks
it as `contextual verify --disjoint-from` does, against the training items and their copy-augmented versions
(recipes/copy_augment.py), and stops with exit 2 before training on any leak.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kimi_student.chat.prompt import item_messages
from kimi_student.data.contextual import generate, write_dataset
from kimi_student.data.disjoint import TrainingMemory, leaks, value_atoms
from kimi_student.data.extract import extracted
from kimi_student.errors import InputError
from kimi_student.eval.harness import run_eval
from kimi_student.eval.report import EvalPaths
from kimi_student.eval.runners.base import RunnerSpec
from kimi_student.eval.runners.options import RunnerOptions
from kimi_student.jsonl import write_json, write_jsonl
from kimi_student.recipes.copy_augment import augmented_set
from kimi_student.recipes.toy_e2e import fit_tokenizer, load_config, timed, torch_threads, train_student
from kimi_student.recipes.toy_run import ToyRun
from kimi_student.resources import config_path, shown_path
from kimi_student.tokenizer import load_tokenizer
from kimi_student.train.examples import conversation_turns

CONFIG = config_path("worker_e2e.yaml")
EXTRACT_TOKENIZER = "smollm2"  # the eval dataset's span tokenizer, as `make contextual-extract` uses
INT_KEYS = {
    "data": ("train_items", "heldout_items", "copy_augment", "bpe_vocab"),
    "decode": ("max_turns", "max_new_tokens", "batch_size"),
}


def read_config(path: Path) -> dict[str, Any]:
    """The config, each integer it needs checked before any work (exit 2 naming the key)."""
    cfg = load_config(path, ("data", "decode", "sizes", "train"))
    for section, keys in INT_KEYS.items():
        for k in keys:
            v = cfg[section].get(k)
            least = 0 if k == "copy_augment" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                what = "a non-negative" if least == 0 else "a positive"
                raise InputError(path, None, f"{section}.{k}", f"must be {what} integer, got {v!r}")
    return cfg


def conversation_text(item: dict[str, Any]) -> str:
    """An item's conversation as the student reads it through the chat template (`role: content` lines)."""
    msgs = item_messages(item, "request") + conversation_turns(item["teacher_text"])
    return "".join(f"{m['role']}: {m['content']}\n" for m in msgs)


def disjointness(held: list[dict[str, Any]], train: list[dict[str, Any]], config: Path) -> dict[str, Any]:
    """The held-out check (data/disjoint.py) of `held` against everything trained on; a leak is bad input
    (exit 2), found before any training."""
    found = leaks(held, TrainingMemory(train))
    atoms = {a for it in held for a, _ in value_atoms(it)}
    if found:
        raise InputError(config, None, "data", f"held-out value in the training set: {found[0]}")
    return {"pass": True, "atoms_checked": len(atoms), "leaks": 0}


def prepare_data(run: ToyRun, d: dict[str, Any], seed: int, config: Path) -> dict[str, Any]:
    """Training items (split train) with `copy_augment` swapped copies of each, and held-out items (split
    heldout, same seed), the latter extracted for the eval; both with their fixtures beside them."""
    header, train, fx = generate(int(d["train_items"]), seed)
    copies, _ = augmented_set(train, int(d.get("copy_augment", 0)), seed)
    hheader, held, hfx = generate(int(d["heldout_items"]), seed, "heldout")
    check = disjointness(held, train + copies, config)
    write_dataset(run.train_jsonl, {**header, "copy_augmented": len(copies)}, train + copies, fx)
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
    return {"train": train, "copies": copies, "heldout": held, "disjoint": check}


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
        data = prepare_data(run, d, seed, config)
    log(
        f"dataset: {len(data['train'])} train (+{len(data['copies'])} copy-augmented), "
        f"{len(data['heldout'])} held-out items; disjoint {data['disjoint']}"
    )
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
            "train_copy_augmented": len(data["copies"]),
            "heldout_items": len(data["heldout"]),
            "heldout_split": "heldout",
            "disjoint": data["disjoint"],
        },
        "train": tr,
        "eval_command": eval_command(run, opts),
        "eval_summary": rep["summary"],
        "gates": rep["gates"],
        "passed": rep["passed"],
    }
    write_json(run.report, report)
    return report
