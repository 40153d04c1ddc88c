"""The evaluation run: dataset -> runner -> tool replay and scoring -> gates -> results and report."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kimi_student.data.dataset import read_dataset
from kimi_student.eval.gates import DEFAULT_GATES, evaluate_gate, evaluate_gates, load_gates, run_passed
from kimi_student.eval.prompt import prompt_wrapper_sha256
from kimi_student.eval.runners import RunnerSpec, make_runner
from kimi_student.eval.scoring import gate_counts, score_item, summarize
from kimi_student.fingerprint import code_version, sha256_file
from kimi_student.jsonl import atomic_writer, dumps_line, write_json
from kimi_student.tokenizer import load_tokenizer
from kimi_student.tools.broker import DEFAULT_FIXTURES, ToolBroker, fixtures_sha256
from kimi_student.tools.registry import tool_registry_sha256

REPORT_VERSION = "1"
BATCH = 256
FINGERPRINTS = (
    "model_fingerprint",
    "dataset_sha256",
    "tool_registry_sha256",
    "tokenizer_fingerprint",
    "prompt_wrapper_sha256",
    "fixtures_sha256",
    "code_version",
)


def created_at() -> str:
    """Now, or SOURCE_DATE_EPOCH when set, so that reruns can be byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    ts = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return ts.replace(microsecond=0).isoformat()


def dataset_fixture_dirs(dataset: Path, header: dict[str, Any]) -> list[Path]:
    """The fixtures written with the dataset (if any), then the project's base fixtures."""
    dirs = []
    if header.get("fixtures_dir"):
        dirs.append((dataset.parent / header["fixtures_dir"]).resolve())
    dirs.append(DEFAULT_FIXTURES)
    return dirs


def fingerprint_problems(header: dict[str, Any], dataset_header: dict[str, Any]) -> list[str]:
    problems = [f"{k} is null or unknown" for k in FINGERPRINTS if header.get(k) in (None, "", "unknown")]
    if dataset_header.get("tool_registry_sha256") != header["tool_registry_sha256"]:
        problems.append("dataset was made with a different tool registry")
    if dataset_header.get("tokenizer_fingerprint") in (None, "", "unknown"):
        problems.append("dataset tokenizer_fingerprint is null (run `kimi-student contextual extract`)")
    elif dataset_header["tokenizer_fingerprint"] != header["tokenizer_fingerprint"]:
        problems.append("dataset was extracted with a different tokenizer")
    return problems


def run_eval(
    dataset: str | Path,
    runner_name: str,
    out: str | Path,
    report_path: str | Path,
    predictions: str | None = None,
    tokenizer: str | None = None,
    fixtures: list[str] | None = None,
    gates_path: str | Path = DEFAULT_GATES,
    progress: bool = False,
    runner_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every item, write results JSONL and report JSON (each atomically), return the report."""
    dataset = Path(dataset)
    dheader, items = read_dataset(dataset)
    gates_cfg = load_gates(gates_path)
    dataset_sha = sha256_file(dataset)
    tok = load_tokenizer(tokenizer or dheader.get("tokenizer") or "smollm2")
    fixture_dirs = [Path(f) for f in fixtures] if fixtures else dataset_fixture_dirs(dataset, dheader)
    options = {**(runner_options or {}), "fixture_dirs": [str(d) for d in fixture_dirs]}  # the tool loop's
    runner = make_runner(RunnerSpec(runner_name, dataset_sha, predictions, options))
    broker = ToolBroker.from_folders(fixture_dirs)

    scores = []
    outputs = runner.outputs(items)
    with (
        atomic_writer(out) as fh,
        tqdm(total=len(items), disable=not progress, unit="item", desc="eval") as bar,
    ):
        for lo in range(0, len(items), BATCH):
            chunk = items[lo : lo + BATCH]
            outs = [next(outputs) for _ in chunk]
            encs = tok.encode_offsets([o.text for o in outs])
            for it, o, enc in zip(chunk, outs, encs):
                sc = score_item(it, o.text, enc, tok, broker, o.error)
                scores.append(sc)
                row = {**sc.to_json(), "output": o.text}
                if o.turns is not None:
                    row.update(turns=o.turns, finish=o.finish)
                fh.write(dumps_line(row))
            bar.update(len(chunk))
    runner.close()

    summary = summarize(scores, broker)
    header = {
        "report_version": REPORT_VERSION,
        "created_at": created_at(),
        "runner": runner.name,
        "proves": "scorer (gold text), not a model" if runner.name == "verification_only" else "model",
        "model_fingerprint": runner.model_fingerprint,
        "dataset_sha256": dataset_sha,
        "tool_registry_sha256": tool_registry_sha256(),
        "tokenizer_fingerprint": tok.fingerprint,
        "prompt_wrapper_sha256": prompt_wrapper_sha256(getattr(runner, "prompt_wrapper", "system")),
        "fixtures_sha256": fixtures_sha256(fixture_dirs),
        "decoding": runner.decoding,
        "seed": dheader.get("seed"),
        "code_version": code_version(),
    }
    problems = fingerprint_problems(header, dheader)
    gates = evaluate_gates(summary, gate_counts(summary), gates_cfg)
    gates["fingerprints_complete"] = evaluate_gate(
        len(problems), 1, {"op": "==", "threshold": 0, "severity": "hard"}
    )
    summary["fingerprint_problems"] = problems
    report = {
        "header": header,
        "summary": summary,
        "gates": gates,
        "passed": run_passed(gates),
        "results_path": str(out),
    }
    write_json(report_path, report)
    return report
