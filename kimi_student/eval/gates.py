"""CAWS gates: thresholds from configs/gates.yaml applied to a run's summary (DESIGN.md section 5)."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import yaml

from kimi_student.errors import InputError
from kimi_student.resources import config_path

DEFAULT_GATES = config_path("gates.yaml")
_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt}


def load_gates(path: str | Path = DEFAULT_GATES) -> dict[str, dict[str, Any]]:
    p = Path(path)
    try:
        gates = yaml.safe_load(p.read_text(encoding="utf-8"))["gates"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as e:
        raise InputError(p, None, "gates", f"cannot read gate config: {e}") from None
    for name, g in gates.items():
        if g.get("op") not in _OPS or not isinstance(g.get("threshold"), (int, float)):
            raise InputError(p, None, f"gates.{name}", "needs op (>=, <=, ==, >, <) and a numeric threshold")
    return gates


def evaluate_gate(value: float | None, count: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """Status of one gate. 0.0 is a value like any other: only None (nothing measured) is missing."""
    out = {
        "value": value,
        "threshold": cfg["threshold"],
        "op": cfg["op"],
        "severity": cfg.get("severity", "normal"),
        "items": count,
    }
    if value is None or count < cfg.get("min_items", 1):
        out["status"] = "inconclusive"
    elif not _OPS[cfg["op"]](value, cfg["threshold"]):
        out["status"] = "warn" if cfg.get("on_miss") == "warn" else "fail"
    elif "warn_below" in cfg and value < cfg["warn_below"]:
        out["status"] = "warn"
    else:
        out["status"] = "pass"
    return out


def evaluate_gates(summary: dict[str, Any], counts: dict[str, int], gates: dict[str, dict[str, Any]]) -> dict:
    """Every gate of the config. Items that errored (the runner could not produce them) make a gate that
    would pass or warn `inconclusive`, with `error_items` saying how many: errors never pass a run."""
    out = {name: evaluate_gate(summary.get(name), counts.get(name, 0), cfg) for name, cfg in gates.items()}
    errors = summary.get("error_items") or 0
    if errors:
        for g in out.values():
            if g["status"] in ("pass", "warn"):
                g.update(status="inconclusive", error_items=errors)
    return out


def run_passed(gates: dict[str, dict[str, Any]]) -> bool:
    """Pass only when every gate passes or warns: a failed or inconclusive gate fails the run."""
    return all(g["status"] in ("pass", "warn") for g in gates.values())


def gate_table(gates: dict[str, dict[str, Any]]) -> str:
    rows = [("gate", "value", "threshold", "status")]
    for name, g in gates.items():
        v = g["value"]
        val = "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
        sev = " (hard)" if g["severity"] == "hard" and g["status"] == "fail" else ""
        sev += f" ({g['error_items']} items errored)" if g.get("error_items") else ""
        rows.append((name, val, f"{g['op']} {g['threshold']}", g["status"] + sev))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
