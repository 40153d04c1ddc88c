"""The toy end-to-end recipe (`kimi-student toy-e2e`): contextual dataset -> tiny student trained on it ->
ExportedProgram -> Core ML package per shape (FP16 compute, INT8 weights) -> numpy MIL executor -> greedy
decode -> tool-span micro-F1 -> gates. Task, split, student, decoding, metric and gates: README, "Toy
end-to-end"; the data: `recipes/toy_data.py`; the folder a run writes: `recipes/toy_run.py`. A package
decodes through `eval --runner coreml`'s generator (held to the executor) and scores with `tool_span`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer

from kimi_student.chat.transcript import parse_transcript
from kimi_student.errors import KimiStudentError
from kimi_student.eval.gates import evaluate_gate, run_passed
from kimi_student.eval.report import created_at
from kimi_student.eval.runners.coreml import CoreMLGenerator
from kimi_student.eval.score.tool_span import SpanCounts, micro, score_call
from kimi_student.export.coreml import export_coreml
from kimi_student.export.greedy import DecodeStats, NgramDrafter, package_seq_len, padded_input
from kimi_student.fingerprint import code_version, sha256_file
from kimi_student.jsonl import write_json, write_jsonl
from kimi_student.models.student import StudentSpec, load_spec
from kimi_student.recipes.config import load_config
from kimi_student.recipes.toy_data import ToyItem, data_summary, prepare_data
from kimi_student.recipes.toy_run import PRIMARY_SHAPE, ToyRun
from kimi_student.resources import config_path, shown_path
from kimi_student.tokenizer import save_hf_tokenizer, train_bpe
from kimi_student.tools.registry import args_valid
from kimi_student.train.examples import ExampleBuilder, load_examples
from kimi_student.train.trainer import train

CONFIG = config_path("toy_e2e.yaml")
TOY_REPORT_VERSION = "toy-e2e-1"
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
# the diagnostics every requested shape reports, by how far it got (a failed shape still names its error)
DIAGNOSTICS = {
    "always": ("seq_len", "compiled", "ran", "end_to_end", "error"),
    "compiled": ("export_seconds", "convert_seconds", "size_bytes", "ops", "op_types", "op_histogram"),
    "ran": ("probe", "forward_ms_median", "forwards", "nonfinite_forwards", "zero_row_forwards", "metric"),
}


# ---- tokenizer and student -----------------------------------------------------------------------------


def fit_tokenizer(texts: Iterable[str], run: ToyRun, vocab_size: int, split_digits: bool = False) -> str:
    """BPE on `texts` (as the student sees them, chat template included), saved as an HF tokenizer folder
    with the chat template; returns its fingerprint. `space_after`: a word of the request and the same
    word inside the JSON arguments are the same token, so the student can copy it."""
    tok = train_bpe(texts, run.bpe, vocab_size, space_after=True, split_digits=split_digits)
    save_hf_tokenizer(run.bpe, run.tokenizer, CHAT_TEMPLATE)
    return tok.fingerprint


def build_tokenizer(items: list[ToyItem], run: ToyRun, vocab_size: int) -> str:
    """The toy's BPE, on the training requests and calls."""
    return fit_tokenizer((f"user: {t.request}\nassistant: {t.response}" for t in items), run, vocab_size)


def train_student(
    config: Path, run: ToyRun, max_steps: int | None, size: str = "toy", progress: bool = False
) -> dict[str, Any]:
    """The regular trainer on the config's `size` spec, its vocabulary sized to the trained tokenizer."""
    spec = load_spec(config, size)
    spec.tokenizer = str(run.tokenizer)
    spec.arch["vocab_size"] = len(AutoTokenizer.from_pretrained(str(run.tokenizer)))
    return fresh_training(spec, run.run, max_steps, progress, data=run.train_jsonl, precision="no")


def fresh_training(
    spec: StudentSpec,
    out: Path,
    max_steps: int | None,
    progress: bool,
    *,
    data: Path | None = None,
    kd: Path | None = None,
    precision: str = "no",
) -> dict[str, Any]:
    """Train `spec` from scratch into `out` (the trainer would otherwise resume a run it finds there) and
    summarise the run; `precision` is the default when the config's `train.precision` does not say."""
    shutil.rmtree(out, ignore_errors=True)
    res = train(
        spec,
        out,
        data=str(data) if data else None,
        kd=str(kd) if kd else None,
        max_steps=max_steps,
        precision=spec.train.get("precision", precision),
        progress=progress,
    )
    h = res["history"]
    return {
        "checkpoint": res["final"],
        "params": spec.n_params,
        "arch": spec.arch,
        "steps": res["steps"],
        "loss_first": h[0]["loss"],
        "loss_last": h[-1]["loss"],
        "tokens_per_s": res["tokens_per_s"],
        "precision": res["precision"],
        "threads": res["threads"],  # a count, or {"adaptive": [[step, count], ...]} (train.threads)
    }


# ---- one shape: export, load, probe, decode --------------------------------------------------------------


def export_shape(checkpoint: Path, out: Path, seq_len: int) -> dict[str, Any]:
    """seq<S>.mlpackage in its own folder (one shape failing leaves the others), INT8 weights."""
    man = export_coreml(checkpoint, out, [seq_len], decode=False)
    e = man["packages"][0]
    hist = e["op_histogram"]
    return {
        "package": str(out / e["name"]),
        "compiled": True,
        "export_seconds": e["export_seconds"],
        "convert_seconds": e["convert_seconds"],
        "size_bytes": e["size_bytes"],
        "op_types": len(hist),
        "ops": sum(v for k, v in hist.items() if k != "const"),
        "op_histogram": hist,
        "sha256": e["sha256"],
    }


def probe(prog: Any, prompt: list[int], pad_id: int) -> dict[str, Any]:
    """One forward on a real prompt: are the logits finite and not all zero?"""
    x = padded_input(prompt, package_seq_len(prog), pad_id)
    t0 = time.perf_counter()
    logits = np.asarray(prog.predict({"input_ids": x})["logits"], dtype=np.float32)
    return {
        "forward_ms": round((time.perf_counter() - t0) * 1000, 3),
        "shape": list(logits.shape),
        "finite": bool(np.isfinite(logits).all()),
        "all_zero": bool((logits == 0).all()),
        "abs_max": float(np.abs(logits).max()),
    }


@dataclass(frozen=True)
class ToyDecoding:
    """How every shape is decoded: `eval --runner coreml`'s generator with the checkpoint's tokenizer and
    chat template, n-gram drafts from the training transcripts instead of the tools' call syntax, and the
    numpy MIL executor on every OS (the report says so)."""

    checkpoint: Path
    drafter: NgramDrafter
    max_new_tokens: int

    def generator(self, package: Path) -> CoreMLGenerator:
        return CoreMLGenerator(
            package, str(self.checkpoint), self.max_new_tokens, drafter=self.drafter, backend="mil_exec"
        )


def make_decoding(checkpoint: Path, train_jsonl: Path, cfg: dict[str, Any]) -> ToyDecoding:
    """Drafts from the training transcripts as the student saw them (`draft_tokens` 0: none, plain greedy)."""
    d = cfg["decode"]
    k = d.get("draft_tokens") or 0
    corpus = []
    if k:
        builder = ExampleBuilder(AutoTokenizer.from_pretrained(str(checkpoint)), {})
        corpus = [e.input_ids.tolist() for e in load_examples(builder, train_jsonl, None, system=False)]
    drafter = NgramDrafter(corpus, d.get("draft_ngram", 3), k)
    return ToyDecoding(checkpoint, drafter, d.get("max_new_tokens", 64))


def decode_items(gen: CoreMLGenerator, items: list[ToyItem]) -> tuple[list[dict[str, Any]], DecodeStats]:
    """Greedy output of every item, the generated ids as text up to and with the stop token (identical
    prompts decoded once: decoding is deterministic); None for a prompt no package holds."""
    stats = DecodeStats()
    cache: dict[tuple[int, ...], str | None] = {}
    rows = []
    for t in items:
        ids = gen.chat.prompt_ids(t.messages)
        if tuple(ids) not in cache:
            decoded = gen.decode_ids(ids, stats)
            text = None if decoded is None else gen.chat.tok.decode(decoded[1], skip_special_tokens=False)
            cache[tuple(ids)] = text
        rows.append(
            {"id": t.id, "scenario": t.scenario, "prompt_tokens": len(ids), "output": cache[tuple(ids)]}
        )
    return rows, stats


def emitted_call(output: str | None) -> dict[str, Any] | None:
    """The first call of the output, if it parses and is closed; anything else is no call."""
    if not output:
        return None
    calls = parse_transcript(output).calls
    if not calls or calls[0].error is not None:
        return None
    return {"name": calls[0].name, "arguments": calls[0].arguments}


def score_rows(rows: list[dict[str, Any]], items: list[ToyItem]) -> dict[str, Any]:
    """Tool-span micro-F1 overall and per scenario, plus how many outputs held a valid call."""
    per: dict[str, list[SpanCounts]] = {}
    parsed = valid = 0
    for row, t in zip(rows, items):
        call = emitted_call(row["output"])
        counts = score_call(t.call, call)
        row.update(gold=t.call, emitted=call, **counts.to_json())
        per.setdefault(t.scenario, []).append(counts)
        parsed += call is not None
        valid += call is not None and args_valid(call["name"], call["arguments"])
    total = micro(c for cs in per.values() for c in cs)
    return {
        "items": len(rows),
        **total.to_json(),
        "exact_calls": sum(1 for r in rows if r["fp"] == 0 and r["fn"] == 0),
        "parsed_call_rate": parsed / len(rows) if rows else None,
        "json_args_valid_rate": valid / len(rows) if rows else None,
        "by_scenario": {k: {"items": len(v), **micro(v).to_json()} for k, v in sorted(per.items())},
    }


def run_shape(package: Path, items: list[ToyItem], dec: ToyDecoding, out: Path) -> dict[str, Any]:
    """Load the package in the executor, probe it, decode every held-out item, score."""
    t0 = time.perf_counter()
    gen = dec.generator(package)
    diag: dict[str, Any] = {"load_seconds": round(time.perf_counter() - t0, 3)}
    try:
        (prog,) = gen.programs.values()
        diag["probe"] = probe(prog, gen.chat.prompt_ids(items[0].messages), gen.chat.pad_id)
        t0 = time.perf_counter()
        rows, stats = decode_items(gen, items)
    finally:
        gen.close()
    diag["decode_seconds"] = round(time.perf_counter() - t0, 3)
    diag.update(stats.to_json())
    diag["distinct_prompts"] = len({tuple(gen.chat.prompt_ids(t.messages)) for t in items})
    diag["prompts_too_long"] = sum(1 for r in rows if r["output"] is None)
    diag["metric"] = score_rows(rows, items)
    write_jsonl(out, rows)
    diag["predictions"] = str(out)
    return diag


# ---- the pipeline ---------------------------------------------------------------------------------------


@contextmanager
def timed(steps: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        steps[name] = round(time.perf_counter() - t0, 3)


def shape_stage(
    run: ToyRun, s: int, items: list[ToyItem], dec: ToyDecoding, steps: dict[str, float]
) -> dict[str, Any]:
    """Export and run one shape; any failure is recorded in its diagnostics, never raised."""
    diag: dict[str, Any] = {"seq_len": s, "compiled": False, "ran": False, "end_to_end": False, "error": None}
    try:
        with timed(steps, f"export_T{s}"):
            diag.update(export_shape(dec.checkpoint, run.coreml(s), s))
        with timed(steps, f"run_T{s}"):
            diag.update(run_shape(Path(diag["package"]), items, dec, run.predictions(s)))
    except KimiStudentError as e:  # unsupported op, corrupt package, executor failure: this shape only
        diag["error"] = f"{type(e).__name__}: {e}"
        return diag
    p = diag["probe"]
    diag["ran"] = p["finite"] and not p["all_zero"]
    diag["end_to_end"] = diag["ran"] and diag["metric"]["items"] == len(items)
    return diag


def missing_diagnostics(diag: dict[str, Any] | None) -> list[str]:
    """Diagnostics a shape's entry lacks for the stage it reached (all of them when there is no entry)."""
    if diag is None:
        return ["<no entry>"]
    want = list(DIAGNOSTICS["always"])
    want += DIAGNOSTICS["compiled"] if diag.get("compiled") else []
    want += DIAGNOSTICS["ran"] if "probe" in diag else []
    return [k for k in want if k not in diag]


def gate_values(shapes: dict[str, dict[str, Any]], requested: list[int]) -> tuple[dict, dict, str | None]:
    """(values, item counts, primary shape) for the gates of configs/toy_e2e.yaml."""
    e2e = [k for k, d in shapes.items() if d["end_to_end"]]
    primary = f"T{PRIMARY_SHAPE}" if f"T{PRIMARY_SHAPE}" in e2e else (e2e[0] if e2e else None)
    probed = [d for d in shapes.values() if "probe" in d]
    # bad outputs: decode forwards with a NaN/inf or an all-zero row, and probes that were not clean
    bad = sum(d.get("nonfinite_forwards", 0) + d.get("zero_row_forwards", 0) + (not d["ran"]) for d in probed)
    metric = shapes[primary]["metric"] if primary else {}
    f1, n_items = metric.get("f1"), metric.get("items", 0)
    values = {
        "shapes_end_to_end": len(e2e),
        "nonfinite_or_zero_outputs": bad if probed else None,
        "shape_diagnostics_missing": sum(len(missing_diagnostics(shapes.get(f"T{s}"))) for s in requested),
        "tool_span_micro_f1": f1,
        "tool_span_micro_f1_target": f1,
    }
    counts = {
        "shapes_end_to_end": len(requested),
        "nonfinite_or_zero_outputs": len(probed),
        "shape_diagnostics_missing": len(requested),
        "tool_span_micro_f1": n_items,
        "tool_span_micro_f1_target": n_items,
    }
    return values, counts, primary


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` torch threads (None: leave as is). OpenMP threads that wait for a busy core at every op
    made a toy training step 20x slower on a 2-core machine with another job running: the toy's config
    leaves the count to its trainer's ThreadGovernor (train.threads: adaptive), which drops to one then."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_toy_e2e(
    out: str | Path,
    shapes: tuple[int, ...] = (PRIMARY_SHAPE,),
    seed: int = 0,
    config: str | Path = CONFIG,
    n_items: int | None = None,
    max_steps: int | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Run the whole pipeline into `out` and return the report (also written to out/report.json)."""
    run, config = ToyRun.at(out), Path(config)
    cfg = load_config(config)
    steps: dict[str, float] = {}
    t_all = time.perf_counter()
    n = n_items or int(cfg["data"]["items"])
    with timed(steps, "dataset"):
        data = prepare_data(run, cfg, n, seed, config)
    log(
        f"dataset: {n} items -> {len(data.train)} train (+{len(data.copies)} copy-augmented), "
        f"{len(data.heldout)} held-out toy items ({steps['dataset']:.1f} s)"
    )
    with timed(steps, "tokenizer"):
        tok_fp = build_tokenizer(data.train, run, int(cfg["data"]["bpe_vocab"]))
    with timed(steps, "train"), torch_threads(cfg.get("threads")):
        tr = train_student(config, run, max_steps)
    log(
        f"train: {tr['params'] / 1e6:.2f}M params, {tr['steps']} steps, loss {tr['loss_first']:.3f} -> "
        f"{tr['loss_last']:.3f}, {tr['tokens_per_s']:.0f} tokens/s ({steps['train']:.1f} s)"
    )
    dec = make_decoding(Path(tr["checkpoint"]), data.train_jsonl, cfg)
    diags: dict[str, dict[str, Any]] = {}
    for s in sorted(set(shapes)):
        diags[f"T{s}"] = shape_stage(run, s, data.heldout, dec, steps)
        log(shape_line(diags[f"T{s}"]))
    values, counts, primary = gate_values(diags, sorted(set(shapes)))
    gates = {k: evaluate_gate(values[k], counts[k], g) for k, g in cfg["gates"].items()}
    steps["total"] = round(time.perf_counter() - t_all, 3)
    report = {
        "header": report_header(config, seed, tok_fp, sorted(set(shapes)), primary),
        "steps_seconds": steps,
        "data": data_summary(n, data),
        "train": tr,
        "shapes": diags,
        "metric": {
            "name": "tool_span_micro_f1",
            "shape": primary,
            **(diags[primary]["metric"] if primary else {}),
        },
        "gates": gates,
        "passed": run_passed(gates),
    }
    write_json(run.report, report)
    return report


def report_header(config: Path, seed: int, tok_fp: str, shapes: list[int], primary: str | None) -> dict:
    return {
        "report_version": TOY_REPORT_VERSION,
        "created_at": created_at(),
        "code_version": code_version(),
        "seed": seed,
        "config": shown_path(config),
        "config_sha256": sha256_file(config),
        "tokenizer_fingerprint": tok_fp,
        "shapes": shapes,
        "primary_shape": primary,
        "metric": "tool-span micro-F1 over held-out items (kimi_student.eval.score.tool_span)",
        "decoding": "greedy argmax through the Core ML package in the numpy MIL executor; n-gram drafts "
        "verified exactly (the output equals plain greedy)",
    }


def shape_line(d: dict[str, Any]) -> str:
    """One line per shape for the console."""
    if d["error"]:
        return f"T{d['seq_len']}: FAILED {d['error']}"
    m, ms = d["metric"], d["forward_ms_median"]
    return (
        f"T{d['seq_len']}: convert {d['convert_seconds']:.1f} s, {d['size_bytes'] / 1e6:.2f} MB, "
        f"{d['ops']} ops ({d['op_types']} types), forward {'-' if ms is None else f'{ms:.1f}'} ms, "
        f"{d['forwards']} forwards for {d['new_tokens']} tokens, micro-F1 {m['f1'] or 0.0:.4f} "
        f"({m['exact_calls']}/{m['items']} exact calls)"
    )


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Step times and the metric, for the console (the gate table follows)."""
    steps = "  ".join(f"{k} {v:.1f}s" for k, v in report["steps_seconds"].items())
    m = report["metric"]
    lines = [f"steps: {steps}"]
    if m.get("f1") is not None:
        lines.append(
            f"tool-span micro-F1 ({m['shape']}, {m['items']} held-out items): precision {m['precision']:.4f} "
            f"recall {m['recall']:.4f} F1 {m['f1']:.4f}; exact calls {m['exact_calls']}/{m['items']}"
        )
    return lines
