"""`kimi-student report diff BASE NEW`: what changed between two fingerprinted reports, metric by metric, and
whether it is a regression. Pure: the CLI reads the files and the tolerances and prints the table.

A regression is a judged metric (one `configs/report_tolerances.yaml` names, with the direction that is better)
that moved the wrong way by more than its tolerance, or a gate that passed in BASE and does not in NEW. Two
reports are comparable only when they measured the same thing: same report kind, dataset, tool registry,
fixtures and tokenizer (the fingerprints in their headers); a model or code change is what a diff is for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kimi_student.errors import InputError
from kimi_student.eval.gates import read_yaml_config, yaml_line
from kimi_student.resources import config_path

DEFAULT_TOLERANCES = config_path("report_tolerances.yaml")

PASSING = ("pass", "warn")  # the statuses a run's exit code counts as passing
# Header fingerprints that say what was measured: a difference in any of them makes the figures incomparable.
COMPARABLE_ON = (
    "report",
    "dataset_sha256",
    "tool_registry_sha256",
    "fixtures_sha256",
    "tokenizer_fingerprint",
)
# What a report header says about what was measured with, shown beside the diff (never a reason to refuse).
SHOWN = ("model_fingerprint", "code_version", "runner", "created_at")
BETTER = ("higher", "lower")


@dataclass(frozen=True)
class MetricRow:
    metric: str
    base: float | None
    new: float | None
    delta: float | None
    better: str | None  # None: shown, not judged
    tolerance: float | None
    verdict: str  # regressed | improved | within | changed | same | missing


@dataclass(frozen=True)
class GateFlip:
    gate: str
    base: str
    new: str
    op: str
    threshold: Any
    base_value: Any
    new_value: Any


def load_tolerances(path: str | Path = DEFAULT_TOLERANCES) -> dict[str, dict[str, Any]]:
    """`metrics: {name: {better: higher|lower, tolerance: absolute >= 0}}`, every entry checked: a fault is
    one line naming the file, its line and the field."""
    p = Path(path)
    node, cfg = read_yaml_config(p, "tolerances")

    def bad(keys: tuple[Any, ...], message: str) -> InputError:
        return InputError(p, yaml_line(node, keys), ".".join(map(str, keys)), message)

    if not isinstance(cfg, dict) or set(cfg) != {"metrics"} or not isinstance(cfg["metrics"], dict):
        raise bad(("metrics",), "a tolerance config is a mapping with `metrics:` only")
    for name, t in cfg["metrics"].items():
        if not isinstance(t, dict) or set(t) != {"better", "tolerance"}:
            raise bad(("metrics", name), "needs exactly better (higher | lower) and tolerance")
        if t["better"] not in BETTER:
            raise bad(("metrics", name, "better"), f"{t['better']!r} is not higher or lower")
        tol = t["tolerance"]
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not tol >= 0:
            raise bad(("metrics", name, "tolerance"), f"{tol!r} is not a number >= 0")
    return cfg["metrics"]


def report_kind(header: dict[str, Any]) -> str:
    """What wrote a report: its `report` field (`caws-eval`, `bench`), or the toy run's header, or `eval`
    (eval reports predate the field)."""
    if "report" in header:
        return str(header["report"])
    return "toy-e2e" if "primary_shape" in header else "eval"


def report_metrics(report: dict[str, Any]) -> dict[str, float | None]:
    """Every number a report measured, flat: its `summary` (eval, judge, bench), `eval_summary` (worker-e2e)
    or `metric` (toy-e2e: the tool-span micro-F1 and its counts, as `tool_span_micro_*`), and the seconds of
    its stages (`steps_seconds`, as `seconds.*`)."""
    out: dict[str, float | None] = {}
    if isinstance(report.get("summary"), dict):
        out.update(flat_metrics(report["summary"]))
    elif isinstance(report.get("eval_summary"), dict):
        out.update(flat_metrics(report["eval_summary"]))
    elif isinstance(report.get("metric"), dict):
        m = {k: v for k, v in report["metric"].items() if k != "name"}
        out.update({f"tool_span_micro_{k}": v for k, v in flat_metrics(m).items()})
    if isinstance(report.get("steps_seconds"), dict):
        out.update(flat_metrics(report["steps_seconds"], "seconds."))
    return out


def fingerprint_changes(base: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, BASE's value, NEW's value) for every fingerprint that differs between two headers."""
    out = []
    for key in COMPARABLE_ON:
        b = report_kind(base) if key == "report" else base.get(key)
        n = report_kind(new) if key == "report" else new.get(key)
        if b != n:
            out.append((key, b, n))
    return out


def flat_metrics(summary: dict[str, Any], prefix: str = "") -> dict[str, float | None]:
    """Every number in a summary, nested mappings as dotted names (`integration_counts.claims`). A null
    stays (a metric with no items); lists and strings are not metrics."""
    out: dict[str, float | None] = {}
    for k, v in summary.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_metrics(v, name + "."))
        elif v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
            out[name] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    return out


def judge_metric(base: float | None, new: float | None, better: str | None, tolerance: float | None) -> str:
    if base is None and new is None:
        return "same"
    if base is None or new is None:
        # A judged metric that NEW no longer measures is not a pass by default.
        return "missing" if new is None and better else "changed"
    delta = new - base
    if delta == 0:
        return "same"
    if better is None or tolerance is None:
        return "changed"
    worse = -delta if better == "higher" else delta
    if worse > tolerance + 1e-12:
        return "regressed"
    return "improved" if worse < 0 else "within"


def metric_rows(
    fb: dict[str, float | None], fn: dict[str, float | None], tolerances: dict[str, dict[str, Any]]
) -> list[MetricRow]:
    rows = []
    for name in sorted(set(fb) | set(fn)):
        b, n = fb.get(name), fn.get(name)
        t = tolerances.get(name) or {}
        better, tol = t.get("better"), t.get("tolerance")
        delta = None if b is None or n is None else n - b
        rows.append(MetricRow(name, b, n, delta, better, tol, judge_metric(b, n, better, tol)))
    return rows


def gate_flips(base: dict[str, Any], new: dict[str, Any]) -> list[GateFlip]:
    """Gates that passed in BASE and do not pass in NEW (failed, inconclusive or gone). A warn passes, as it
    does for the exit code of the run that wrote it; its metric's own tolerance judges how far it moved."""
    out = []
    for name, g in sorted(base.items()):
        if g.get("status") not in PASSING:
            continue
        n = new.get(name) or {}
        if n.get("status") not in PASSING:
            out.append(
                GateFlip(
                    name,
                    g["status"],
                    n.get("status", "absent"),
                    g.get("op", ""),
                    g.get("threshold"),
                    g.get("value"),
                    n.get("value"),
                )
            )
    return out


def diff_reports(
    base: dict[str, Any], new: dict[str, Any], tolerances: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The whole comparison, as `report diff --out` writes it. `regression` is what exit 1 means."""
    bh, nh = base["header"], new["header"]
    rows = metric_rows(report_metrics(base), report_metrics(new), tolerances)
    flips = gate_flips(base.get("gates") or {}, new.get("gates") or {})
    regressed = [r.metric for r in rows if r.verdict in ("regressed", "missing")]
    return {
        "fingerprint_changes": [{"key": k, "base": b, "new": n} for k, b, n in fingerprint_changes(bh, nh)],
        "base": {k: bh.get(k) for k in SHOWN},
        "new": {k: nh.get(k) for k in SHOWN},
        "metrics": [asdict(r) for r in rows],
        "gates_lost": [asdict(f) for f in flips],
        "regressed_metrics": regressed,
        "regression": bool(regressed or flips),
    }


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def diff_table(d: dict[str, Any], everything: bool = False) -> str:
    """The table a person reads: fingerprints that changed, then the metrics (judged ones, and with
    `everything` also those only shown), then the gates NEW lost."""
    lines = []
    for c in d["fingerprint_changes"]:
        lines.append(f"fingerprint {c['key']}: {c['base']} -> {c['new']}")
    for side in ("base", "new"):
        s = d[side]
        lines.append(
            f"{side.upper():4} model {s['model_fingerprint']} code {s['code_version']} at {s['created_at']}"
        )
    rows = [m for m in d["metrics"] if everything or m["better"] or m["verdict"] in ("regressed", "missing")]
    w = max([len(m["metric"]) for m in rows] + [6])
    lines.append(f"{'metric':{w}}  {'base':>8}  {'new':>8}  {'delta':>8}  {'better':>6}  {'tol':>6}  verdict")
    for m in rows:
        delta = "—" if m["delta"] is None else f"{m['delta']:+.4f}"
        tol = "—" if m["tolerance"] is None else f"{m['tolerance']:g}"
        lines.append(
            f"{m['metric']:{w}}  {_num(m['base']):>8}  {_num(m['new']):>8}  {delta:>8}  "
            f"{m['better'] or '—':>6}  {tol:>6}  {m['verdict']}"
        )
    for f in d["gates_lost"]:
        lines.append(
            f"gate lost: {f['gate']} ({f['op']} {f['threshold']}): {f['base']} at {f['base_value']} -> {f['new']} "
            f"at {f['new_value']}"
        )
    lines.append("REGRESSION" if d["regression"] else "no regression")
    return "\n".join(lines)
