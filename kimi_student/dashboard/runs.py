"""Every report the project writes, read as one shape: a `Run` (its kind, when, which code and model, what it
measured, its metrics and gates). Pure but for `read_runs`, which walks a folder.

Kinds and where their figures live:
- `eval` (`kimi-student eval`, also its shards and `eval-smoke`): `summary`, `gates`;
- `judge` (`kimi-student judge eval`, make caws-eval): `summary`, `gates`;
- `toy-e2e` (make demo): `metric` (the tool-span micro-F1 of the primary shape) and `steps_seconds`, `gates`;
- `worker-e2e`: `eval_summary`, `gates`, `steps_seconds`;
- `bench` (a `bench/` script's `--report`): `summary`, `header.bench` names it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kimi_student.eval.report_diff import report_kind, report_metrics


@dataclass(frozen=True)
class Run:
    path: str  # relative to the reports folder
    kind: str
    name: str  # what was measured: the dataset (eval, judge), the config (toy, worker), the bench
    created_at: str
    code_version: str
    model: str  # the model fingerprint (short), or "" where the report has none
    metrics: dict[str, float | None]
    gates: dict[str, dict[str, Any]]
    passed: bool | None
    header: dict[str, Any] = field(repr=False)
    shard: tuple[int, int] | None = None
    results: str = ""  # its per-item results file, relative to the reports folder ("" where it has none)

    @property
    def slug(self) -> str:
        """A file name for its page, unique per report path."""
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.path.removesuffix(".json"))
        return f"run-{safe}"

    @property
    def series(self) -> tuple[str, str]:
        """Runs of one series measure the same thing and so can be drawn on one time axis."""
        return self.kind, self.name


def _short(fp: Any) -> str:
    return str(fp)[:12] if fp else ""


def run_of(report: Any, path: str) -> Run | None:
    """The run a report describes, or None when the JSON is not a report this project writes."""
    if not isinstance(report, dict) or not isinstance(report.get("header"), dict):
        return None
    h = report["header"]
    gates = report.get("gates") if isinstance(report.get("gates"), dict) else {}
    common = {
        "path": path,
        "created_at": str(h.get("created_at") or ""),
        "code_version": str(h.get("code_version") or ""),
        "gates": gates,
        "passed": report.get("passed") if isinstance(report.get("passed"), bool) else None,
        "header": h,
    }
    metrics = report_metrics(report)
    kind = report_kind(h)
    if kind == "caws-eval" and isinstance(report.get("summary"), dict):
        return Run(kind="judge", name=_short(h.get("dataset_sha256")) or str(h.get("dataset", "")),
                   model=_short(h.get("model_fingerprint")), metrics=metrics,
                   results=path.removesuffix(".json") + ".results.jsonl", **common)  # fmt: skip
    if kind == "bench" and isinstance(report.get("summary"), dict):
        return Run(kind="bench", name=str(h.get("bench", "")), model="", metrics=metrics, **common)
    if kind == "toy-e2e" and isinstance(report.get("metric"), dict):
        return Run(kind="toy-e2e", name=str(h.get("config", "")), model="", metrics=metrics, **common)
    if isinstance(report.get("eval_summary"), dict):
        return Run(kind="worker-e2e", name=str(h.get("config", "")), model="", metrics=metrics, **common)
    if kind == "eval" and isinstance(report.get("summary"), dict) and "dataset_sha256" in h:
        shard, rel = h.get("shard"), report.get("results_path")
        return Run(
            kind="eval", name=_short(h.get("dataset_sha256")), model=_short(h.get("model_fingerprint")),
            metrics=metrics, shard=(int(shard[0]), int(shard[1])) if isinstance(shard, list) and len(shard) == 2 else None,
            results=(PurePosixPath(path).parent / rel).as_posix() if isinstance(rel, str) else "", **common,
        )  # fmt: skip
    return None


def read_runs(folder: Path) -> tuple[list[Run], list[str]]:
    """Every report under `folder` (recursively), oldest first; and the JSON files that are not reports."""
    runs, skipped = [], []
    for p in sorted(folder.rglob("*.json")):
        rel = p.relative_to(folder).as_posix()
        try:
            run = run_of(json.loads(p.read_text(encoding="utf-8")), rel)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            run = None
        (runs.append(run) if run else skipped.append(rel))
    runs.sort(key=lambda r: (r.created_at, r.path))
    return runs, skipped


def latest(runs: Iterable[Run]) -> dict[tuple[str, str, str], Run]:
    """The newest run of each (kind, what it measured, model)."""
    out: dict[tuple[str, str, str], Run] = {}
    for r in runs:  # oldest first: the last one wins
        out[(r.kind, r.name, r.model)] = r
    return out


@dataclass(frozen=True)
class Aggregate:
    kind: str
    name: str
    model: str
    code_version: str
    runs: int
    shards: int  # shard reports among them (each a part of the items)
    metrics: dict[str, tuple[float, float, float, float]]  # mean, sd, min, max


def aggregates(runs: Iterable[Run]) -> list[Aggregate]:
    """Runs of one model and code on one thing, repeated or sharded: each metric's mean and spread. A shard
    holds part of the items; the mean of shards weighs each by its item count (`metrics["items"]`)."""
    groups: dict[tuple[str, str, str, str, int], list[Run]] = {}
    for r in runs:  # shards of n never mix with whole runs (n = 0) or shards of another n
        groups.setdefault((r.kind, r.name, r.model, r.code_version, r.shard[1] if r.shard else 0), []).append(
            r
        )
    out = []
    for (kind, name, model, code, _), rs in sorted(groups.items()):
        if len(rs) < 2:
            continue
        stats = {}
        for m in sorted({k for r in rs for k in r.metrics}):
            have = [r for r in rs if r.metrics.get(m) is not None]
            if not have:
                continue
            vals = [float(r.metrics[m] or 0.0) for r in have]
            weights = [float(r.metrics.get("items") or 1.0) if r.shard else 1.0 for r in have]
            mean = sum(v * w for v, w in zip(vals, weights)) / sum(weights)
            sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
            stats[m] = (mean, sd, min(vals), max(vals))
        out.append(Aggregate(kind, name, model, code, len(rs), sum(1 for r in rs if r.shard), stats))
    return out
