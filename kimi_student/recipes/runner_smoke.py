"""Runner smoke and parity (`kimi-student eval smoke`, `make eval-smoke`).

The toy student of a `kimi-student toy-e2e` run, on its held-out items (regenerated from the run's seed as
a contextual eval dataset with fixtures), through hf_local (the checkpoint in process), coreml (its INT8
package in the MIL executor, or Core ML on macOS) and openai_http (the same checkpoint behind
`transformers serve` on 127.0.0.1): the same items and the same tool loop. It prints each runner's F1
and each pair's difference, and fails when a pair differs by more than the tolerance (0.03).

The toy student is trained to write the first call of a request alone, so runs use the `request` prompt
wrapper and one model turn; its tool-call F1 (tool_call_f1) is what it can score, and integration F1 is
0 for every runner (it writes no `Integration:` sentences).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from itertools import combinations
from pathlib import Path
from typing import Any

from kimi_student.data.contextual import generate, write_dataset
from kimi_student.data.extract import extract_items
from kimi_student.eval.harness import run_eval
from kimi_student.eval.report import EvalPaths
from kimi_student.eval.runners.base import RunnerSpec
from kimi_student.eval.runners.options import RunnerOptions
from kimi_student.jsonl import read_jsonl, write_json
from kimi_student.recipes.serve import transformers_serve
from kimi_student.recipes.toy_run import ToyFacts, ToyRun
from kimi_student.tokenizer import load_tokenizer

RUNNERS = ("hf_local", "coreml", "openai_http")
TOY_EVAL = {"prompt_wrapper": "request", "max_turns": 1, "max_new_tokens": 48}
METRICS = ("tool_call_f1", "integration_f1_lax", "integration_f1_strict")
TOLERANCE = 0.03


def heldout_dataset(toy: ToyRun, facts: ToyFacts, out: Path, limit: int | None) -> Path:
    """The toy run's held-out items as an extracted contextual dataset, with its fixtures."""
    held = {row["id"] for _, row in read_jsonl(toy.heldout_jsonl) if "id" in row}
    header, items, fixtures = generate(facts.generated_items, facts.seed)
    items = [it for it in items if it["id"] in held][:limit]
    tok = load_tokenizer("smollm2")
    header = {
        **header,
        "subset": {"kind": "toy-e2e held-out", "run": str(toy.root), "items": len(items)},
        "tokenizer": "smollm2",
        "tokenizer_fingerprint": tok.fingerprint,
    }
    write_dataset(out, header, extract_items(items, tok), fixtures)
    return out


def _delta(a: float | None, b: float | None) -> float | None:
    """|a - b|; None when only one side has a value (never within tolerance)."""
    if a is None and b is None:
        return 0.0
    return None if a is None or b is None else abs(a - b)


def run_smoke(
    toy: str | Path,
    out: str | Path,
    runners: tuple[str, ...] = RUNNERS,
    limit: int | None = 60,
    tolerance: float = TOLERANCE,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    run, out = ToyRun.at(toy), Path(out)
    facts = ToyFacts.of(run)
    checkpoint, package = run.checkpoint, run.coreml(facts.package_seq_len)
    dataset = heldout_dataset(run, facts, out / "heldout.jsonl", limit)
    runs: dict[str, dict[str, Any]] = {}
    outputs: dict[str, list[str]] = {}
    for name in runners:
        model = package if name == "coreml" else checkpoint
        served = transformers_serve(checkpoint) if name == "openai_http" else nullcontext(None)
        with served as url:
            t0 = time.perf_counter()
            options = RunnerOptions.from_dict({**TOY_EVAL, "model": str(model), "url": url})
            r = run_eval(
                dataset,
                RunnerSpec(name, options=options),
                EvalPaths(out / f"{name}.jsonl", out / f"{name}.json"),
            )
            seconds = time.perf_counter() - t0
        s = r["summary"]
        runs[name] = {
            **{m: s[m] for m in METRICS},
            "items": s["items"],
            "error_items": s["error_items"],
            "tool_calls": s["tool_calls"],
            "seconds": round(seconds, 2),
            "model_fingerprint": r["header"]["model_fingerprint"],
            "report": str(out / f"{name}.json"),
        }
        outputs[name] = [row["output"] for _, row in read_jsonl(out / f"{name}.jsonl")]
        log(
            f"{name:12s} tool_call_f1 {s['tool_call_f1']:.4f}  items {s['items']}  errors {s['error_items']}  "
            f"{seconds:.1f} s"
        )
    pairs = {}
    for a, b in combinations(runners, 2):
        deltas = {m: _delta(runs[a][m], runs[b][m]) for m in METRICS}
        same = sum(x == y for x, y in zip(outputs[a], outputs[b], strict=True))
        pairs[f"{a} vs {b}"] = {
            "delta": deltas,
            "identical_transcripts": same,
            "within_tolerance": all(d is not None and d <= tolerance for d in deltas.values()),
        }
    errors = sum(r["error_items"] for r in runs.values())
    report = {
        "toy_run": str(run.root),
        "dataset": str(dataset),
        "options": TOY_EVAL,
        "tolerance": tolerance,
        "runners": runs,
        "pairs": pairs,
        "passed": errors == 0 and all(p["within_tolerance"] for p in pairs.values()),
    }
    write_json(out / "smoke.json", report)
    return report


def smoke_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"{'pair':28s} {'dF1 tool_call':>13s} {'dF1 lax':>8s} {'identical':>10s}"]
    n = next(iter(report["runners"].values()))["items"] if report["runners"] else 0
    for name, p in report["pairs"].items():
        d = p["delta"]
        fmt = [("—" if d[m] is None else f"{d[m]:.4f}") for m in ("tool_call_f1", "integration_f1_lax")]
        lines.append(f"{name:28s} {fmt[0]:>13s} {fmt[1]:>8s} {p['identical_transcripts']:>6d}/{n}")
    return lines
