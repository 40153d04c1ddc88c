"""CAWS gates: thresholds from configs/gates.yaml applied to a run's summary (DESIGN.md section 5)."""

from __future__ import annotations

import operator
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from kimi_student.errors import InputError
from kimi_student.eval.score.item import gate_counts
from kimi_student.resources import config_path

DEFAULT_GATES = config_path("gates.yaml")
_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt}
# The metrics a gate can rest on: those gate_counts knows how many items each rests on.
GATEABLE = tuple(gate_counts(defaultdict(int)))
_CHOICES = {"op": tuple(_OPS), "on_miss": ("fail", "warn"), "severity": ("normal", "hard")}
_NUMBERS = ("threshold", "warn_below")
_GATE_KEYS = (*_CHOICES, *_NUMBERS, "min_items")


def load_gates(
    path: str | Path = DEFAULT_GATES, gateable: tuple[str, ...] = GATEABLE
) -> dict[str, dict[str, Any]]:
    """The gates of a config, every key and value checked: a fault is one line naming the file, its line
    and the field (exit 2), before a run writes anything. `gateable`: the metrics a gate may name (the
    Worker's summary by default; the Judge's for configs/judge_gates.yaml)."""
    p = Path(path)
    node, cfg = read_yaml_config(p, "gates")

    def bad(keys: tuple[Any, ...], message: str) -> InputError:
        return InputError(p, yaml_line(node, keys), ".".join(map(str, keys)), message)

    if not isinstance(cfg, dict):
        what = "an empty file" if cfg is None else f"a {type(cfg).__name__}"
        raise bad(("gates",), f"a gate config is a mapping with `gates:`, not {what}")
    for key in cfg:
        if key != "gates":
            raise bad((key,), "unknown key (a gate config holds `gates:` only)")
    gates = cfg.get("gates")
    if not isinstance(gates, dict) or not gates:
        raise bad(("gates",), "needs at least one gate (name: {op, threshold})")
    for name, g in gates.items():
        problem = _gate_problem(name, g, gateable)
        if problem is not None:
            raise bad(("gates", name, *problem[0]), problem[1])
    return gates


def _gate_problem(name: Any, g: Any, gateable: tuple[str, ...]) -> tuple[tuple[str, ...], str] | None:
    """(the key under the gate, what is wrong) for a gate that cannot be applied, else None."""
    if name not in gateable:
        return (), f"no summary metric of that name (gateable: {', '.join(gateable)})"
    if not isinstance(g, dict):
        return (), "a gate is a mapping (op, threshold, ...)"
    for key, value in g.items():
        if key not in _GATE_KEYS:
            return (key,), f"unknown key (known: {', '.join(_GATE_KEYS)})"
        if key in _CHOICES and value not in _CHOICES[key]:
            return (key,), f"{value!r:.40} is not one of {', '.join(_CHOICES[key])}"
        if key in _NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return (key,), f"{value!r:.40} is not a number"
        if key == "min_items" and (type(value) is not int or value < 0):
            return (key,), f"{value!r:.40} is not a whole number of items"
    for key in ("op", "threshold"):
        if key not in g:
            return (key,), "missing (a gate needs op and threshold)"
    return None


def read_yaml_config(p: Path, what: str) -> tuple[yaml.Node | None, Any]:
    """A YAML config as its node tree (for line numbers) and its value; an unreadable or invalid file is an
    InputError naming the file, the line where YAML found the fault and `what` the config is."""
    try:
        text = p.read_text(encoding="utf-8")
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise InputError(p, line, what, f"not valid YAML: {e.problem or e.context}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        why = e.strerror if isinstance(e, OSError) else str(e).splitlines()[0]
        raise InputError(p, None, what, f"cannot read {what} config: {why}") from None


def yaml_line(node: yaml.Node | None, keys: tuple[Any, ...]) -> int | None:
    """The line of the deepest of `keys` found in the YAML document `node` (1-based)."""
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        found = next(((k, v) for k, v in node.value if k.value == str(key)), None)
        if found is None:
            break
        line, node = found[0].start_mark.line + 1, found[1]
    return line if line is not None else (node.start_mark.line + 1 if node is not None else None)


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
