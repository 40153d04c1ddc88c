"""The Worker end-to-end recipe (`kimi-student worker-e2e`): contextual dataset -> teacher -> kd-mix ->
student -> `eval --runner hf_local` through the real tool loop and ToolBroker on held-out items -> the CAWS
gates of configs/gates.yaml.

- teacher: SmolLM2-135M (the embedded model; a pretrained LM copies values it has never seen, which a
  student trained from scratch on this box did not learn: held-out F1 0.013) fine-tuned on the gold
  conversations (loss on the assistant turns only, train/examples.py);
- kd-mix: the teacher scores the gold conversations (`kd-mix --score-gold`, teacher forcing), its top-k
  log-probs at every assistant position;
- student: SmolLM2-135M as shipped, or a layer subset of the trained teacher (`sizes.worker.init.teacher:
  "@teacher"`; subsets did not copy), distilled on the KD mix (ce_teacher + sparse kl_forward); same
  tokenizer, so logit KD applies;
- export: the student as Core ML packages (INT8 weights, FP16 compute, `export.shapes`, and the stateful
  decoder with `export.chunks` functions);
- parity: on the first `parity.coreml_items` held-out items, `eval --runner coreml` (the MIL executor's
  stateful decoder), and on the first `parity.openai_http_items`, `eval --runner openai_http` against the
  student behind `transformers serve` on 127.0.0.1, each beside hf_local on the same items: its gates, and
  integration F1 lax/strict within `parity.max_delta_f1` of hf_local's.

The held-out items are `contextual gen --split heldout` (values no training item holds); the recipe checks
it as `contextual verify --disjoint-from` does and stops with exit 2 before training on any leak.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from kimi_student.chat.prompt import item_messages
from kimi_student.data.contextual import copied_from, generate, write_dataset
from kimi_student.data.dataset import read_dataset
from kimi_student.data.disjoint import TrainingMemory, leaks, value_atoms
from kimi_student.data.extract import extracted
from kimi_student.errors import InputError
from kimi_student.eval.harness import run_eval
from kimi_student.eval.report import EvalPaths
from kimi_student.eval.runners.base import RunnerSpec
from kimi_student.eval.runners.options import RunnerOptions
from kimi_student.export.coreml import export_coreml
from kimi_student.jsonl import write_json, write_jsonl
from kimi_student.models.student import load_spec
from kimi_student.recipes.config import load_config
from kimi_student.recipes.copy_augment import NUMBER_SOURCES, WORD_SOURCES, augmented_set
from kimi_student.recipes.serve import transformers_serve
from kimi_student.recipes.toy_e2e import fresh_training, timed, torch_threads
from kimi_student.recipes.toy_run import ToyRun
from kimi_student.resources import config_path, shown_path
from kimi_student.tokenizer import load_tokenizer
from kimi_student.train.examples import conversation_turns
from kimi_student.train.teacher_forced import score_gold

CONFIG = config_path("worker_e2e.yaml")
EXTRACT_TOKENIZER = "smollm2"  # the eval dataset's span tokenizer, as `make contextual-extract` uses
TRAINED_TEACHER = "@teacher"  # `init.teacher` of the student: this run's trained teacher
INT_KEYS = {
    "data": ("train_items", "heldout_items", "copy_augment", "computed_copies"),
    "decode": ("max_turns", "max_new_tokens", "batch_size"),
    "kd": ("items", "top_k"),
    "parity": ("coreml_items", "openai_http_items"),
}
NON_NEGATIVE = {"copy_augment", "computed_copies", "coreml_items", "openai_http_items"}
OPTIONAL = {"computed_copies"}  # absent: as copy_augment


def read_config(path: Path) -> dict[str, Any]:
    """The config, each integer it needs checked before any work (exit 2 naming the key)."""
    cfg = load_config(path, ("data", "decode", "kd", "sizes", "train", "export", "parity"))
    for section, keys in INT_KEYS.items():
        for k in keys:
            v = cfg[section].get(k)
            if v is None and k in OPTIONAL:
                continue
            least = 0 if k in NON_NEGATIVE else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                what = "a non-negative" if least == 0 else "a positive"
                raise InputError(path, None, f"{section}.{k}", f"must be {what} integer, got {v!r}")
    if cfg["data"].get("copy_words", "training") not in WORD_SOURCES:
        got = cfg["data"]["copy_words"]
        raise InputError(
            path, None, "data.copy_words", f"must be one of {', '.join(WORD_SOURCES)}, got {got!r}"
        )
    if cfg["data"].get("copy_numbers", "training") not in NUMBER_SOURCES:
        got = cfg["data"]["copy_numbers"]
        raise InputError(
            path, None, "data.copy_numbers", f"must be one of {', '.join(NUMBER_SOURCES)}, got {got!r}"
        )
    shapes = cfg["export"].get("shapes")
    if (
        not isinstance(shapes, list)
        or not shapes
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 8 for n in shapes)
    ):
        raise InputError(
            path, None, "export.shapes", f"must be a list of sequence lengths >= 8, got {shapes!r}"
        )
    chunks = cfg["export"].get("chunks")
    if not isinstance(chunks, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and 2 <= n <= max(shapes) for n in chunks
    ):
        raise InputError(
            path,
            None,
            "export.chunks",
            f"must be a list of token counts in [2, {max(shapes)}], got {chunks!r}",
        )
    delta = cfg["parity"].get("max_delta_f1")
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not 0 <= delta <= 1:
        raise InputError(path, None, "parity.max_delta_f1", f"must be a number in [0, 1], got {delta!r}")
    for size in ("teacher", "worker"):
        if not isinstance(cfg["sizes"].get(size), dict):
            raise InputError(path, None, f"sizes.{size}", "missing (the teacher and the student)")
    return cfg


def conversation_text(item: dict[str, Any]) -> str:
    """An item's conversation as `role: content` lines (what a tokenizer fitted on conversations reads)."""
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


def interleaved(items: list[dict[str, Any]], copies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item followed by its copies (ids `ITEM~copyK`): the first `kd.items` the teacher scores then hold
    copies as well as originals, in the proportion training has (the trainer draws its own order)."""
    of: dict[str, list[dict[str, Any]]] = {}
    for c in copies:
        of.setdefault(copied_from(c["id"]), []).append(c)
    return [row for it in items for row in (it, *of.get(it["id"], []))]


def prepare_data(run: ToyRun, d: dict[str, Any], seed: int, config: Path) -> dict[str, Any]:
    """Training items (split train) with `copy_augment` swapped copies of each, and held-out items (split
    heldout, same seed), the latter extracted for the eval; both with their fixtures beside them."""
    header, train_items, fx = generate(int(d["train_items"]), seed)
    n = int(d.get("copy_augment", 0))
    copies, _ = augmented_set(
        train_items,
        n,
        seed,
        d.get("copy_words", "training"),
        int(d.get("computed_copies", n)),
        d.get("copy_numbers", "training"),
    )
    hheader, held, hfx = generate(int(d["heldout_items"]), seed, "heldout")
    check = disjointness(held, train_items + copies, config)
    write_dataset(
        run.train_jsonl, {**header, "copy_augmented": len(copies)}, interleaved(train_items, copies), fx
    )
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
    return {"train": train_items, "copies": copies, "heldout": held, "disjoint": check}


def train_model(
    config: Path,
    size: str,
    out: Path,
    *,
    data: Path | None = None,
    kd: Path | None = None,
    teacher: Path | None = None,
    max_steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The regular trainer on one size of the config; a student whose init names `@teacher` starts from
    this run's trained `teacher`. `overrides` replace keys of the config's `train:` (the benches' arms: SFT
    loss weights in bench/worker_kd.py, process weights and seeds in bench/proc.py)."""
    spec = load_spec(config, size)
    spec.train = {**spec.train, **(overrides or {})}
    if spec.init.get("teacher") == TRAINED_TEACHER:
        if teacher is None:
            raise InputError(config, None, f"sizes.{size}.init.teacher", "@teacher needs a trained teacher")
        spec.init = {**spec.init, "teacher": f"hf:{teacher}"}
    return {
        **fresh_training(spec, out, max_steps, progress, data=data, kd=kd, precision="auto"),
        "layers": spec.arch["num_hidden_layers"],
        "init": spec.init,
    }


def score_with_teacher(
    run: ToyRun, teacher: Path, k: dict[str, Any], progress: bool = False
) -> dict[str, Any]:
    """`kd-mix --score-gold` of the first `kd.items` training items by the trained teacher."""
    head = score_gold(
        f"hf:{teacher}",
        run.train_jsonl,
        kd_path(run),
        wrapper="request",
        top_k=int(k["top_k"]),
        precision=str(k.get("precision", "auto")),
        limit=int(k["items"]),
        progress=progress,
    )
    keep = ("records", "ok", "sequence_tokens", "precision")
    return {key: head[key] for key in keep}


def kd_path(run: ToyRun) -> Path:
    return run.root / "data" / "kd_scored.jsonl"


def teacher_run(run: ToyRun) -> Path:
    return run.root / "teacher"


def teacher_checkpoint(run: ToyRun) -> Path:
    return teacher_run(run) / "final"


def eval_options(checkpoint: str, e: dict[str, Any]) -> RunnerOptions:
    return RunnerOptions(
        model=checkpoint,
        prompt_wrapper="request",
        max_turns=int(e["max_turns"]),
        max_new_tokens=int(e["max_new_tokens"]),
        batch_size=int(e["batch_size"]),
        dtype=str(e.get("dtype", "fp32")),
    )


def eval_command(run: ToyRun, o: RunnerOptions) -> str:
    """The CLI line that runs the same eval again."""
    return (
        f"kimi-student eval --runner hf_local --model {o.model} --in {run.heldout_jsonl} "
        f"--out {run.root / 'eval_results.jsonl'} --report {run.root / 'eval_report.json'} "
        f"--prompt-wrapper {o.prompt_wrapper} --max-turns {o.max_turns} "
        f"--max-new-tokens {o.max_new_tokens} --batch-size {o.batch_size} --dtype {o.dtype}"
    )


# the stages `until` may stop after (eval, export and parity run only in a whole run)
STAGES = ("dataset", "teacher", "kd-mix", "student")


def run_worker_e2e(
    out: str | Path,
    seed: int = 0,
    config: str | Path = CONFIG,
    max_steps: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _m: None,
    until: str | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline into `out` and return the report (also written to out/report.json); the
    eval's own report and per-item results are out/eval_report.json and out/eval_results.jsonl.
    `max_steps` overrides the student's steps (the teacher keeps its own). `until` (one of STAGES) stops
    after that stage: the report then holds the stages run, `stopped_after`, and `passed` None (nothing
    was gated), e.g. the fine-tuned teacher alone as a Worker for `drafter data`."""
    if until is not None and until not in STAGES:
        raise InputError(None, None, "until", f"{until!r} is not a stage; one of {', '.join(STAGES)}")
    run, config = ToyRun.at(out), Path(config)
    cfg = read_config(config)
    steps: dict[str, float] = {}
    done: dict[str, Any] = {"header": {"config": shown_path(config), "seed": seed}, "steps_seconds": steps}
    t_all = time.perf_counter()

    def stopped(stage: str) -> dict[str, Any] | None:
        if stage != until:
            return None
        steps["total"] = round(time.perf_counter() - t_all, 3)
        report = {**done, "stopped_after": stage, "passed": None}
        write_json(run.report, report)
        return report

    with timed(steps, "dataset"):
        data = prepare_data(run, cfg["data"], seed, config)
    log(
        f"dataset: {len(data['train'])} train (+{len(data['copies'])} copy-augmented), "
        f"{len(data['heldout'])} held-out items; disjoint {data['disjoint']}"
    )
    done["data"] = {
        "train_items": len(data["train"]),
        "train_copy_augmented": len(data["copies"]),
        "heldout_items": len(data["heldout"]),
        "heldout_split": "heldout",
        "disjoint": data["disjoint"],
    }
    if (rep := stopped("dataset")) is not None:
        return rep
    threads = cfg.get("threads")
    with timed(steps, "teacher"), torch_threads(threads):
        te = done["teacher"] = train_model(
            config, "teacher", teacher_run(run), data=run.train_jsonl, progress=progress
        )
    log(stage_line("teacher", te, steps["teacher"]))
    if (rep := stopped("teacher")) is not None:
        return rep
    with timed(steps, "kd_mix"), torch_threads(threads):
        kd = done["kd_mix"] = score_with_teacher(run, Path(te["checkpoint"]), cfg["kd"], progress)
    log(
        f"kd-mix: {kd['ok']}/{kd['records']} conversations scored, {kd['sequence_tokens']} tokens ({steps['kd_mix']:.1f} s)"
    )
    if (rep := stopped("kd-mix")) is not None:
        return rep
    with timed(steps, "student"), torch_threads(threads):
        st = done["train"] = train_model(
            config,
            "worker",
            run.run,
            kd=kd_path(run),
            teacher=Path(te["checkpoint"]),
            max_steps=max_steps,
            progress=progress,
        )
    log(stage_line("student", st, steps["student"]))
    if (rep := stopped("student")) is not None:
        return rep
    opts = eval_options(str(st["checkpoint"]), cfg["decode"])
    log(f"eval: {eval_command(run, opts)}")
    paths = EvalPaths(run.root / "eval_results.jsonl", run.root / "eval_report.json")
    with timed(steps, "eval"), torch_threads(threads):
        rep = run_eval(
            run.heldout_jsonl, RunnerSpec("hf_local", None, opts), paths, fresh=True, progress=progress
        )
    x = cfg["export"]
    with timed(steps, "export"), torch_threads(threads):
        ex = export_student(run, Path(st["checkpoint"]), x)
    sizes = ", ".join(f"{p['name']} {p['size_bytes'] / 1e6:.1f} MB" for p in ex["packages"])
    log(f"export: {sizes} ({ex['precision']['weights']} weights, {ex['precision']['compute']} compute)")
    legs: dict[str, dict[str, Any] | None] = {}
    hf_subsets: dict[int, dict[str, Any]] = {}
    for runner in PARITY_RUNNERS:
        n = int(cfg["parity"][f"{runner}_items"])
        legs[runner] = None
        if n > 0:
            with timed(steps, f"eval_{runner}"), torch_threads(threads):
                legs[runner] = runner_parity(run, runner, n, cfg["parity"], rep, opts, hf_subsets, progress)
            log(parity_line(runner, legs[runner]))
    steps["total"] = round(time.perf_counter() - t_all, 3)
    report = {
        **done,
        "eval_command": eval_command(run, opts),
        "eval_summary": rep["summary"],
        "gates": rep["gates"],
        "export": ex,
        **legs,
        # each runner counts where it was evaluated: its gates and F1 parity with hf_local
        "passed": rep["passed"] and all(leg["passed"] and leg["parity"] for leg in legs.values() if leg),
    }
    write_json(run.report, report)
    return report


F1_KEYS = ("integration_f1_lax", "integration_f1_strict")


def coreml_folder(run: ToyRun) -> Path:
    return run.root / "coreml"


def export_student(run: ToyRun, checkpoint: Path, x: dict[str, Any]) -> dict[str, Any]:
    """The student as Core ML packages, INT8 weights and FP16 compute: one per `export.shapes`, and the
    stateful decoder (context: the largest shape) with a function per `export.chunks`, which the coreml
    runner decodes with."""
    shapes = sorted(x["shapes"])
    man = export_coreml(checkpoint, coreml_folder(run), shapes, context=shapes[-1], chunks=x["chunks"])
    return {
        "folder": str(coreml_folder(run)),
        "precision": man["precision"],
        "packages": [{k: e[k] for k in ("name", "size_bytes", "convert_seconds")} for e in man["packages"]],
    }


PARITY_RUNNERS = ("coreml", "openai_http")


def runner_parity(
    run: ToyRun,
    runner: str,
    n: int,
    p: dict[str, Any],
    hf: dict[str, Any],
    opts: RunnerOptions,
    hf_subsets: dict[int, dict[str, Any]],
    progress: bool = False,
) -> dict[str, Any]:
    """`eval --runner coreml` (the exported packages in the MIL executor) or `--runner openai_http` (the
    student behind `transformers serve` on 127.0.0.1) on the first `n` held-out items, against hf_local
    on the same items (its own run when they are a subset, once per size: `hf_subsets`): gates, and |Δ|
    of integration F1."""
    header, items = read_dataset(run.heldout_jsonl)
    n = min(n, len(items))
    data, hf_summary = run.heldout_jsonl, hf["summary"]
    if n < len(items):  # fixtures_dir is relative to the dataset's folder: the subset lives beside it
        data = run.heldout_jsonl.with_name(f"heldout_{n}.jsonl")
        write_jsonl(data, [header, *items[:n]])
        if n not in hf_subsets:
            sub = EvalPaths(run.root / f"eval_hf_{n}_results.jsonl", run.root / f"eval_hf_{n}_report.json")
            spec = RunnerSpec("hf_local", None, opts)
            hf_subsets[n] = run_eval(data, spec, sub, fresh=True, progress=progress)["summary"]
        hf_summary = hf_subsets[n]
    paths = EvalPaths(run.root / f"eval_{runner}_results.jsonl", run.root / f"eval_{runner}_report.json")
    if runner == "coreml":
        spec = RunnerSpec("coreml", None, replace(opts, model=str(coreml_folder(run))))
        rep = run_eval(data, spec, paths, fresh=True, progress=progress)
    else:
        checkpoint = str(opts.model)
        with transformers_serve(checkpoint) as url:
            # one request at a time: the server decodes one anyway, and queued requests would time out
            o = replace(opts, model=checkpoint, url=f"{url}/v1", concurrency=1, timeout_s=600.0)
            rep = run_eval(data, RunnerSpec("openai_http", None, o), paths, fresh=True, progress=progress)
    delta = {k: round(abs((rep["summary"][k] or 0.0) - (hf_summary[k] or 0.0)), 6) for k in F1_KEYS}
    return {
        "items": n,
        "hf_local": {k: hf_summary[k] for k in F1_KEYS},
        runner: {k: rep["summary"][k] for k in F1_KEYS},
        "delta_f1": delta,
        "max_delta_f1": float(p["max_delta_f1"]),
        "parity": all(d <= float(p["max_delta_f1"]) for d in delta.values()),
        "gates": rep["gates"],
        "passed": rep["passed"],
    }


def parity_line(runner: str, leg: dict[str, Any]) -> str:
    f1 = "  ".join(
        f"{k.removeprefix('integration_f1_')} {leg[runner][k] or 0:.3f} (hf_local {leg['hf_local'][k] or 0:.3f})"
        for k in F1_KEYS
    )
    verdict = "within" if leg["parity"] else "OUTSIDE"
    return (
        f"eval {runner}: {leg['items']} items, F1 {f1}, {verdict} ±{leg['max_delta_f1']}; gates "
        f"{'pass' if leg['passed'] else 'fail'}"
    )


def stage_line(name: str, r: dict[str, Any], seconds: float) -> str:
    return (
        f"{name}: {r['params'] / 1e6:.1f}M params, {r['layers']} layers, {r['steps']} steps, loss "
        f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}, {r['tokens_per_s']:.0f} tokens/s "
        f"{r['precision']} ({seconds:.1f} s)"
    )
