"""The report of a run: its header's fingerprints checked, its summary, its gates, and where it and the
results are written (the two replaced together)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kimi_student.eval.gates import evaluate_gate, evaluate_gates, run_passed
from kimi_student.eval.score.item import ItemScore, gate_counts, summarize
from kimi_student.jsonl import write_json, write_lines
from kimi_student.outputs import pair_writer

REPORT_VERSION = "1"
# The header fields that must be known for a run to pass, in the order their problems are listed.
FINGERPRINTS = (
    "model_fingerprint",
    "dataset_sha256",
    "tool_registry_sha256",
    "tokenizer_fingerprint",
    "prompt_wrapper_sha256",
    "fixtures_sha256",
    "code_version",
)


@dataclass(frozen=True)
class EvalPaths:
    """Where a run writes its per-item results (JSONL) and its report (JSON)."""

    results: Path
    report: Path


def created_at() -> str:
    """Now, or SOURCE_DATE_EPOCH when set, so that reruns can be byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    ts = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return ts.replace(microsecond=0).isoformat()


def fingerprint_problems(header: dict[str, Any], dataset_header: dict[str, Any]) -> list[str]:
    problems = [f"{k} is null or unknown" for k in FINGERPRINTS if header.get(k) in (None, "", "unknown")]
    if dataset_header.get("tool_registry_sha256") != header["tool_registry_sha256"]:
        problems.append("dataset was made with a different tool registry")
    if dataset_header.get("tokenizer_fingerprint") in (None, "", "unknown"):
        problems.append("dataset tokenizer_fingerprint is null (run `kimi-student contextual extract`)")
    elif dataset_header["tokenizer_fingerprint"] != header["tokenizer_fingerprint"]:
        problems.append("dataset was extracted with a different tokenizer")
    return problems


def results_path(out: EvalPaths) -> str:
    """Where the results are, seen from the report's folder: the same for the same --out/--report, on any
    machine or working directory."""
    return Path(os.path.relpath(out.results.resolve(), out.report.resolve().parent)).as_posix()


def build_report(
    header: dict[str, Any],
    rows: list[dict[str, Any]],
    problems: list[str],
    gates_cfg: dict[str, dict[str, Any]] | None,
    results: str,
) -> dict[str, Any]:
    """The report of `rows` (in dataset order). `gates_cfg` None: a shard's report, gates not applied."""
    summary = summarize([ItemScore.from_json(r) for r in rows])
    summary["fingerprint_problems"] = problems
    if gates_cfg is None:
        return {"header": header, "summary": summary, "gates": {}, "passed": None, "results_path": results}
    gates = evaluate_gates(summary, gate_counts(summary), gates_cfg)
    gates["fingerprints_complete"] = evaluate_gate(
        len(problems), 1, {"op": "==", "threshold": 0, "severity": "hard"}
    )
    return {
        "header": header,
        "summary": summary,
        "gates": gates,
        "passed": run_passed(gates) and not summary["error_items"],  # errors never pass, whatever the gates
        "results_path": results,
    }


def write_run(
    header: dict[str, Any],
    rows: list[dict[str, Any]],
    lines: list[str],
    problems: list[str],
    gates_cfg: dict[str, dict[str, Any]],
    out: EvalPaths,
) -> dict[str, Any]:
    """Write a whole run's results (`lines`: each row's canonical JSON) and gated report (a plain run's,
    or the merge of its shards)."""
    report = build_report(header, rows, problems, gates_cfg, results_path(out))
    write_pair(out, lines, report)
    return report


def write_pair(out: EvalPaths, lines: Iterable[str], report: dict[str, Any]) -> None:
    """The results (a line each) and the report, replaced together or not at all (`pair_writer`, the
    report last): a kill never leaves new results beside an old report, or the reverse, once the next
    write (of the same pair) has settled what it left."""
    with pair_writer(out.report, out.results, other_is_folder=False) as (new_report, new_results):
        write_lines(new_results, lines)
        write_json(new_report, report)
