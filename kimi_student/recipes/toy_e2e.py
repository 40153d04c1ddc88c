"""The toy end-to-end pipeline: contextual dataset -> tiny student trained on it -> ExportedProgram ->
Core ML package per shape (FP16 compute, INT8 weights) -> numpy MIL executor -> greedy decode -> gates.

Task. The student reads a short request and must emit the first tool call,
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. Toy items are the contextual items whose
first call's arguments are all stated in the request: `flat_args` items of web_research, page_reading,
file_ops, repo_nav and api_lookup, single or multi call, normal or negative control, plain or adversarial
(ambiguous wording, malformed JSON in the request). Skipped: arithmetic, code_run and report_write (their
arguments are computed or invented, not stated), every other argument structure (it adds arguments the
request does not give, e.g. a random `top_k`), error-recovery items (their first call is a deliberate
failure the request cannot predict) and controls without a call. The prompt is the request alone (the line
after `User: `), not the CAWS header, so request + call fit 128 tokens.

Split. Items are split by their gold call: a call (name + normalised arguments, hashed with the seed)
goes to held-out with probability `heldout_percent`, so no held-out item's call occurs in training; the
model has to read the request, not recall a call it has seen. The generator draws from small pools
(~350 distinct toy calls), so a student trained on the real items alone learns to recall calls; each
training item therefore also gets `copy_augment` copies whose argument words that the request states are
swapped, in request and call alike, for other training words (`copy_augmented`): new combinations that
can only be got right by copying from the request. A copy whose call would fall on the held-out side is
dropped.

Student. A byte-level BPE (`train_bpe(space_after=True)`, ~1k tokens) is trained on the real training
items and saved as an HF tokenizer folder with a minimal chat template (`user: ...\\nassistant: `); with
spaces kept after words, a word of the request and the same word inside the JSON value are one token. The
student (configs/toy_e2e.yaml: 2 layers, 128 wide, ~0.5M parameters) is an HF Llama folder trained by the
regular trainer (`train`, loss `ce_ground_truth`, packed rows without cut examples), on one torch thread.

Metric. Tool-span micro-F1 (`kimi_student.eval.score.tool_span`): the emitted call and the gold call are bags of
(key, value) pairs, the name one pair and every argument leaf one pair, values normalised as call_match
compares them; TP/FP/FN pooled over held-out items. An item whose output has no parsable, closed call
scores all its gold pairs as FN. The output is the deterministic greedy decode (argmax) of the Core ML
package in the numpy MIL executor (`kimi_student.export.greedy`), stopping at `</tool_call>` or EOS.

Gates (configs/toy_e2e.yaml): at least one shape compiles and runs end to end (converted, loaded by the
executor, a finite non-zero probe forward, every held-out item decoded); no forward with a NaN/inf or
all-zero logit row at a real position; every requested shape has its diagnostics in the report;
micro-F1 of the primary shape (T128 when built, else the first shape that ran) >= 0.20 (the original's
gate), and >= 0.90 as a warning-level target. Exit 0 when every gate passes or warns, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kimi_student.chat.transcript import format_call
from kimi_student.errors import InputError, KimiStudentError
from kimi_student.fingerprint import code_version, sha256_file
from kimi_student.jsonl import write_json, write_jsonl
from kimi_student.models.student import CONFIGS

CONFIG = CONFIGS / "toy_e2e.yaml"
REPORT_VERSION = "toy-e2e-1"
SCENARIOS = ("web_research", "page_reading", "file_ops", "repo_nav", "api_lookup")
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
PRIMARY_SHAPE = 128
_WORD = re.compile(r"[A-Za-z0-9]+")
# the diagnostics every requested shape reports, by how far it got (a failed shape still names its error)
DIAGNOSTICS = {
    "always": ("seq_len", "compiled", "ran", "end_to_end", "error"),
    "compiled": ("export_seconds", "convert_seconds", "size_bytes", "ops", "op_types", "op_histogram"),
    "ran": ("probe", "forward_ms_median", "forwards", "nonfinite_forwards", "zero_row_forwards", "metric"),
}


@dataclass(frozen=True)
class ToyItem:
    id: str
    scenario: str
    request: str
    call: dict[str, Any]  # the gold first call {name, arguments}

    @property
    def response(self) -> str:
        return format_call(self.call["name"], self.call["arguments"])

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.request}]


# ---- data --------------------------------------------------------------------------------------------


def is_toy_item(item: dict[str, Any]) -> bool:
    """A first call whose arguments the request states (see the module docstring for the reasons)."""
    m = item["metadata"]
    return (
        m["scenario"] in SCENARIOS
        and m["structure"] == "flat_args"
        and m["complexity"] in ("single_call", "multi_call")
        and m["expected_behaviour"] == "normal"
        and bool(m["call_sequence"])
    )


def toy_item(item: dict[str, Any]) -> ToyItem:
    from kimi_student.chat.prompt import item_messages

    request = item_messages(item, "request")[0]["content"]  # the request after the CAWS header and context
    return ToyItem(item["id"], item["metadata"]["scenario"], request, item["metadata"]["call_sequence"][0])


def is_heldout(call: dict[str, Any], percent: int, seed: int) -> bool:
    """Deterministic by (seed, tool, normalised arguments): equal calls always land on the same side."""
    from kimi_student.tools.normalize import fixture_key

    key = f"{seed}\x1f{call['name']}\x1f{fixture_key(call['name'], call['arguments'])}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 < percent


def build_data(n_items: int, seed: int, heldout_percent: int) -> tuple[list[ToyItem], list[ToyItem]]:
    from kimi_student.data.contextual import generate

    _, items, _ = generate(n_items, seed)
    toy = [toy_item(it) for it in items if is_toy_item(it)]
    held = [t for t in toy if is_heldout(t.call, heldout_percent, seed)]
    train = [t for t in toy if not is_heldout(t.call, heldout_percent, seed)]
    return train, held


def _string_leaves(value: Any) -> Iterator[str]:
    from kimi_student.eval.score.tool_span import leaves

    return (v for _, v, _ in leaves(value) if isinstance(v, str))


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value


def word_pool(items: list[ToyItem]) -> dict[str, list[str]]:
    """The words of the training calls' string arguments, by shape (lower case, upper case, other)."""
    pool: dict[str, set[str]] = {}
    for t in items:
        for v in _string_leaves(t.call["arguments"]):
            for w in _WORD.findall(v):
                pool.setdefault(_word_kind(w), set()).add(w)
    return {k: sorted(v) for k, v in sorted(pool.items())}


def _word_kind(word: str) -> str:
    return "upper" if word.isupper() else "lower" if word.islower() else "other"


def copy_augmented(
    t: ToyItem, rng: random.Random, pool: dict[str, list[str]], keep: Callable[[dict[str, Any]], bool]
) -> ToyItem | None:
    """The item with the words of its string arguments that the request also states swapped for other
    training words (of the same shape), in the request and in the call alike. The new combination was
    never seen, so it is got right by copying from the request, not by recalling a call: what the held-out
    split asks for. `keep(call)` must accept the new call (it rejects calls of the held-out side).
    None when no argument word occurs in the request (e.g. an ambiguous, lower-cased request)."""
    words = {
        w
        for v in _string_leaves(t.call["arguments"])
        for w in _WORD.findall(v)
        if _word_re([w]).search(t.request) and f"{w}://" not in v  # a URL keeps its scheme
    }
    if not words:
        return None
    mapping = {w: rng.choice(pool.get(_word_kind(w)) or [w]) for w in sorted(words)}
    rx = _word_re(sorted(words, key=len, reverse=True))

    def sub(text: str) -> str:
        return rx.sub(lambda m: mapping[m.group(0)], text)

    call = {"name": t.call["name"], "arguments": _map_strings(t.call["arguments"], sub)}
    return ToyItem(f"{t.id}~copy", t.scenario, sub(t.request), call) if keep(call) else None


def _word_re(words: list[str]) -> re.Pattern[str]:
    """Whole words only: `config` in a path, not inside `configure`."""
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, words)) + r")(?![A-Za-z0-9])")


def write_split(path: Path, items: list[ToyItem], header: dict[str, Any]) -> Path:
    """JSONL in the trainer's contextual shape: the response (`teacher_text`) is the gold first call."""
    rows = [
        {"id": t.id, "prompt": t.request, "teacher_text": t.response, "scenario": t.scenario, "call": t.call}
        for t in items
    ]
    write_jsonl(path, [{"__header__": True, **header}, *rows])
    return path


# ---- tokenizer and student -----------------------------------------------------------------------------


def build_tokenizer(items: list[ToyItem], folder: Path, vocab_size: int) -> str:
    """BPE on the training requests and calls, saved as an HF tokenizer folder; returns its fingerprint."""
    from kimi_student.tokenizer import save_hf_tokenizer, train_bpe

    raw = folder.parent / "bpe.json"
    # the texts as the student sees them (chat template included); space_after: a word of the request
    # and the same word inside the JSON arguments are the same token, so the student can copy it
    texts = (f"user: {t.request}\nassistant: {t.response}" for t in items)
    tok = train_bpe(texts, raw, vocab_size, space_after=True)
    save_hf_tokenizer(raw, folder, CHAT_TEMPLATE)
    return tok.fingerprint


def train_student(
    config: Path, tokenizer: Path, data: Path, run: Path, max_steps: int | None
) -> dict[str, Any]:
    """The regular trainer on the toy spec, its vocabulary sized to the trained tokenizer."""
    from transformers import AutoTokenizer

    from kimi_student.models.student import load_spec
    from kimi_student.train.trainer import train

    spec = load_spec(config, "toy")
    spec.tokenizer = str(tokenizer)
    spec.arch["vocab_size"] = len(AutoTokenizer.from_pretrained(str(tokenizer)))
    shutil.rmtree(run, ignore_errors=True)  # a fresh run: the trainer would otherwise resume
    res = train(spec, run, str(data), max_steps=max_steps, precision=spec.train.get("precision", "no"))
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
    }


# ---- one shape: export, load, probe, decode --------------------------------------------------------------


def export_shape(checkpoint: Path, out: Path, seq_len: int) -> dict[str, Any]:
    """seq<S>.mlpackage in its own folder (one shape failing leaves the others), INT8 weights."""
    from kimi_student.export.coreml import export_coreml

    man = export_coreml(checkpoint, out, [seq_len], quantize=True, decode=False)
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
    import numpy as np

    from kimi_student.export.greedy import package_seq_len, padded_input

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


@dataclass
class Decoder:
    """What decoding needs besides the package: tokenizer, stop ids, drafts, limits."""

    tokenizer: Any
    prompt_ids: Callable[[list[dict[str, str]]], list[int]]
    stop_ids: list[int]
    pad_id: int
    drafter: Any
    max_new_tokens: int


def decode_items(prog: Any, items: list[ToyItem], dec: Decoder) -> tuple[list[dict[str, Any]], Any]:
    """Greedy output of every item (identical prompts decoded once: decoding is deterministic)."""
    from kimi_student.export.greedy import DecodeStats, greedy_decode, package_seq_len

    s = package_seq_len(prog)
    stats = DecodeStats()
    cache: dict[tuple[int, ...], str | None] = {}
    rows = []
    for t in items:
        ids = dec.prompt_ids(t.messages)
        if tuple(ids) not in cache:
            fits = len(ids) < s
            out = (
                greedy_decode(prog, ids, dec.stop_ids, dec.max_new_tokens, dec.drafter, dec.pad_id, stats)
                if fits
                else None
            )
            cache[tuple(ids)] = None if out is None else dec.tokenizer.decode(out, skip_special_tokens=False)
        rows.append(
            {"id": t.id, "scenario": t.scenario, "prompt_tokens": len(ids), "output": cache[tuple(ids)]}
        )
    return rows, stats


def emitted_call(output: str | None) -> dict[str, Any] | None:
    """The first call of the output, if it parses and is closed; anything else is no call."""
    from kimi_student.chat.transcript import parse_transcript

    if not output:
        return None
    calls = parse_transcript(output).calls
    if not calls or calls[0].error is not None:
        return None
    return {"name": calls[0].name, "arguments": calls[0].arguments}


def score_rows(rows: list[dict[str, Any]], items: list[ToyItem]) -> dict[str, Any]:
    """Tool-span micro-F1 overall and per scenario, plus how many outputs held a valid call."""
    from kimi_student.eval.score.tool_span import SpanCounts, micro, score_call
    from kimi_student.tools.registry import args_valid

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


def run_shape(package: Path, items: list[ToyItem], dec: Decoder, out: Path) -> dict[str, Any]:
    """Load the package in the executor, probe it, decode every held-out item, score."""
    from kimi_student.export.mil import MilProgram

    t0 = time.perf_counter()
    prog = MilProgram.load(package)
    diag: dict[str, Any] = {"load_seconds": round(time.perf_counter() - t0, 3)}
    diag["probe"] = probe(prog, dec.prompt_ids(items[0].messages), dec.pad_id)
    t0 = time.perf_counter()
    rows, stats = decode_items(prog, items, dec)
    diag["decode_seconds"] = round(time.perf_counter() - t0, 3)
    diag.update(stats.to_json())
    diag["distinct_prompts"] = len({tuple(dec.prompt_ids(t.messages)) for t in items})
    diag["prompts_too_long"] = sum(1 for r in rows if r["output"] is None)
    diag["metric"] = score_rows(rows, items)
    write_jsonl(out, rows)
    diag["predictions"] = str(out)
    return diag


# ---- the pipeline ---------------------------------------------------------------------------------------


@contextmanager
def _timed(steps: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        steps[name] = round(time.perf_counter() - t0, 3)


def load_config(path: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise InputError(path, None, None, f"cannot read config: {e}") from None
    for key in ("data", "decode", "gates", "sizes"):
        if not isinstance(cfg.get(key), dict):
            raise InputError(path, None, key, "missing section")
    return cfg


def make_decoder(checkpoint: Path, train_jsonl: Path, cfg: dict[str, Any]) -> Decoder:
    """Tokenizer and chat template from the checkpoint; n-gram drafts from the training transcripts."""
    from transformers import AutoTokenizer

    from kimi_student.export.greedy import NgramDrafter
    from kimi_student.train.examples import ExampleBuilder, load_examples

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    builder = ExampleBuilder(tok, {})
    corpus = [e.input_ids.tolist() for e in load_examples(builder, train_jsonl, None, system=False)]
    d = cfg["decode"]
    return Decoder(
        tok,
        builder.prompt_ids,
        [tok.eos_token_id, tok.convert_tokens_to_ids("</tool_call>")],
        tok.pad_token_id,
        NgramDrafter(corpus, d.get("draft_ngram", 3), d.get("draft_tokens", 16))
        if d.get("draft_tokens")
        else None,
        d.get("max_new_tokens", 64),
    )


def shape_stage(
    checkpoint: Path, out: Path, s: int, items: list[ToyItem], dec: Decoder, steps: dict[str, float]
) -> dict[str, Any]:
    """Export and run one shape; any failure is recorded in its diagnostics, never raised."""
    diag: dict[str, Any] = {"seq_len": s, "compiled": False, "ran": False, "end_to_end": False, "error": None}
    try:
        with _timed(steps, f"export_T{s}"):
            diag.update(export_shape(checkpoint, out / "coreml" / f"T{s}", s))
        with _timed(steps, f"run_T{s}"):
            diag.update(run_shape(Path(diag["package"]), items, dec, out / f"predictions_T{s}.jsonl"))
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


@dataclass
class ToyData:
    train: list[ToyItem]  # real training items
    copies: list[ToyItem]  # their copy-augmented versions
    heldout: list[ToyItem]
    train_jsonl: Path


def prepare_data(out: Path, cfg: dict[str, Any], n: int, seed: int, config: Path) -> ToyData:
    """Generate, select, split, augment; write data/train.jsonl (real + copies) and data/heldout.jsonl."""
    d = cfg["data"]
    pct = int(d["heldout_percent"])
    train, held = build_data(n, seed, pct)
    if not train or not held:
        raise InputError(
            config, None, "data.items", f"{n} items give {len(train)} train / {len(held)} held out"
        )
    rng, pool = random.Random(seed), word_pool(train)

    def keep(call: dict[str, Any]) -> bool:
        return not is_heldout(call, pct, seed)

    n_copies = int(d.get("copy_augment", 0))
    copies = [c for t in train for _ in range(n_copies) if (c := copy_augmented(t, rng, pool, keep))]
    header = {"source": "contextual", "generated_items": n, "seed": seed, "config": str(config)}
    path = write_split(out / "data" / "train.jsonl", train + copies, {**header, "split": "train"})
    write_split(out / "data" / "heldout.jsonl", held, {**header, "split": "heldout"})
    return ToyData(train, copies, held, path)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` torch threads (None: leave as is). One thread is the default for the toy: its matrices
    are too small to gain from a second thread, and OpenMP threads that wait for a busy core at every op
    made a training step 20x slower on a 2-core machine with another job running."""
    import torch

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
    from kimi_student.eval.gates import evaluate_gate, run_passed

    out, config = Path(out), Path(config)
    cfg = load_config(config)
    steps: dict[str, float] = {}
    t_all = time.perf_counter()
    n = n_items or int(cfg["data"]["items"])
    with _timed(steps, "dataset"):
        data = prepare_data(out, cfg, n, seed, config)
    log(
        f"dataset: {n} items -> {len(data.train)} train (+{len(data.copies)} copy-augmented), "
        f"{len(data.heldout)} held-out toy items ({steps['dataset']:.1f} s)"
    )
    with _timed(steps, "tokenizer"):
        tok_fp = build_tokenizer(data.train, out / "tokenizer", int(cfg["data"]["bpe_vocab"]))
    with _timed(steps, "train"), torch_threads(cfg.get("threads", 1)):
        tr = train_student(config, out / "tokenizer", data.train_jsonl, out / "run", max_steps)
    log(
        f"train: {tr['params'] / 1e6:.2f}M params, {tr['steps']} steps, loss {tr['loss_first']:.3f} -> "
        f"{tr['loss_last']:.3f}, {tr['tokens_per_s']:.0f} tokens/s ({steps['train']:.1f} s)"
    )
    checkpoint = Path(tr["checkpoint"])
    dec = make_decoder(checkpoint, data.train_jsonl, cfg)
    diags: dict[str, dict[str, Any]] = {}
    for s in sorted(set(shapes)):
        diags[f"T{s}"] = shape_stage(checkpoint, out, s, data.heldout, dec, steps)
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
    write_json(out / "report.json", report)
    return report


def report_header(config: Path, seed: int, tok_fp: str, shapes: list[int], primary: str | None) -> dict:
    from kimi_student.eval.harness import created_at

    return {
        "report_version": REPORT_VERSION,
        "created_at": created_at(),
        "code_version": code_version(),
        "seed": seed,
        "config": str(config),
        "config_sha256": sha256_file(config),
        "tokenizer_fingerprint": tok_fp,
        "shapes": shapes,
        "primary_shape": primary,
        "metric": "tool-span micro-F1 over held-out items (kimi_student.eval.score.tool_span)",
        "decoding": "greedy argmax through the Core ML package in the numpy MIL executor; n-gram drafts "
        "verified exactly (the output equals plain greedy)",
    }


def data_summary(n: int, data: ToyData) -> dict[str, Any]:
    train_calls = {t.response for t in data.train + data.copies}
    return {
        "generated_items": n,
        "train_items": len(data.train),
        "train_copy_augmented": len(data.copies),
        "heldout_items": len(data.heldout),
        "train_distinct_calls": len(train_calls),
        "heldout_distinct_calls": len({t.response for t in data.heldout}),
        "heldout_calls_seen_in_train": sum(1 for t in data.heldout if t.response in train_calls),
        "heldout_by_scenario": dict(sorted(Counter(t.scenario for t in data.heldout).items())),
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
