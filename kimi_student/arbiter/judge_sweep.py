"""`kimi-student judge sweep`: does an audit Judge compare, or guess? Each held-out case's own count or score
is kept and the tier's limit it is checked against is moved so that the two stand `delta` apart (files or
lines added `delta` over the maximum, coverage `delta` hundredths over the floor); the one check line is then
read teacher-forced at its outcome (` ok`, or the rule it breaks: the comparison, not the fate after ` -> `,
which reads the waivers), in the whole case (its prompt and its audit's check lines, as `judge lines` reads
them) and as a line drill (the line alone under `line_drills.ASK_LINES`). A Judge that compares is right on
both sides of the limit; one that writes its prior is right on one side only, whatever the distance (stop 47:
a 135M Judge wrote `ok` after every coverage line of a case, 0.20 under its floor included). Variants are pure
(`variants`, `outcome_at`); the model runs in `read_sweep`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from kimi_student.arbiter.cases import Candidate, Context
from kimi_student.arbiter.diff import parse_diff
from kimi_student.arbiter.judge_data import case_parts
from kimi_student.arbiter.judge_lines import line_spans, teacher_forced
from kimi_student.arbiter.line_drills import ASK_LINES
from kimi_student.arbiter.render import Wording, render_single

# rule -> (the policy's key, the audit line's start, whether the rule breaks above the limit)
RULES = {
    "files": ("max_files", "files ", True),
    "lines": ("max_loc", "lines added ", True),
    "coverage": ("coverage_min", "coverage ", False),
}
# value - limit, in files, lines or hundredths of coverage (a change has 1-19 files: 20 over is none)
DELTAS = {
    "files": (-8, -3, -1, 0, 1, 3, 8),
    "lines": (-20, -8, -3, -1, 0, 1, 3, 8, 20),
    "coverage": (-20, -8, -3, -1, 0, 1, 3, 8, 20),
}
CONTEXTS = ("case", "drill")


def _value(ctx: Context, cand: Candidate, rule: str) -> float | None:
    """The case's own operand of `rule`: files changed, lines added, the lowest coverage score (None: the case
    has no coverage evidence, so there is no line to sweep)."""
    if rule == "coverage":
        scores = [i["value"] for i in (cand.evidence or {}).get("items", []) if i["kind"] == "coverage"]
        return min(scores) if scores else None
    d = parse_diff(cand.diff)
    return d.files_changed if rule == "files" else d.lines_added


def variants(rec: dict[str, Any], rule: str, deltas: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """For each delta whose limit is valid (a maximum >= 0, a floor within 0..1), the case with its tier's
    limit moved to `value - delta`: its prompt, its audit target (the oracle's, every line recomputed), the
    swept line and whether it breaks its rule; and the same line as a drill."""
    key, start, breaks_above = RULES[rule]
    ctx, cand = Context(**rec["case"]["context"]), Candidate(**rec["case"]["candidates"][0])
    value = _value(ctx, cand, rule)
    if value is None:
        return []
    w = Wording.from_key(rec["wording"])
    out = []
    for delta in DELTAS[rule] if deltas is None else deltas:
        limit = round(value - delta / 100, 2) if rule == "coverage" else int(value) - delta
        if not (0 <= limit <= 1 if rule == "coverage" else limit >= 0):
            continue
        moved = copy.deepcopy(ctx)
        moved.policy["risk_tiers"][str(moved.spec["risk_tier"])][key] = limit
        lines = [line for _, line in case_parts(moved, cand, w)]
        line = next(x for x in lines if x.startswith(start) and x[len(start)].isdigit())
        out.append(
            {
                "id": rec["id"],
                "rule": rule,
                "delta": delta,
                "breaks": (delta > 0) if breaks_above else (delta < 0),
                "line": line,
                # the checks of the audit target: the ruling after them does not bear on a line's tokens
                "case": (render_single(moved, cand, w), json.dumps({"checks": lines}, ensure_ascii=False)),
                "drill": (ASK_LINES, json.dumps({"checks": [line]}, ensure_ascii=False)),
            }
        )
    return out


def outcome_at(target: str, line: str) -> int:
    """Where `line`'s outcome (`ok`, or the rule it breaks) starts in `target`: after its last `: ` before any
    ` -> ` (a broken line's fate, which reads the waivers and the gate's mode, is not the comparison)."""
    start = line_spans(target, [("", line)])[0][2]  # its first place: a swept line is written once
    head = line.split(" -> ")[0]
    return start + head.rindex(": ") + 2


def outcome_right(
    target: str, line: str, offsets: Sequence[tuple[int, int]], gold: list[int], pred: list[int]
) -> bool:
    """Whether the Judge's most likely token where `line`'s outcome starts is the oracle's: the comparison's
    decision (` ok` against ` coverage`, ` max`), read after the oracle's own text."""
    at = outcome_at(target, line)
    i = next(i for i, (a, b) in enumerate(offsets) if a <= at < b)
    return pred[i] == gold[i]


def read_sweep(
    gen: Any, rows: Sequence[dict[str, Any]], contexts: Sequence[str] = CONTEXTS
) -> list[dict[str, Any]]:
    """Each variant read teacher-forced through `gen` in each context: whether its line's outcome is right."""
    out = []
    for v in rows:
        for context in contexts:
            prompt, target = v[context]
            read = teacher_forced(gen, prompt, target)
            if read is None:
                continue
            out.append(
                {k: v[k] for k in ("id", "rule", "delta", "breaks", "line")}
                | {"context": context, "right": outcome_right(target, v["line"], *read)}
            )
    return out


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per context and delta: outcomes right of lines; and per context, the lines that break their rule apart
    from the ones that hold it (`breaks`, `holds`): a Judge that compares is right on both."""
    table: dict[str, dict[str, Any]] = {}
    for context in sorted({r["context"] for r in rows}, key=CONTEXTS.index):
        mine = [r for r in rows if r["context"] == context]
        t: dict[str, Any] = {}
        for delta in sorted({r["delta"] for r in mine}):
            at = [r for r in mine if r["delta"] == delta]
            t[f"{delta:+d}"] = {"right": sum(r["right"] for r in at), "lines": len(at)}
        for side, breaks in (("breaks", True), ("holds", False)):
            at = [r for r in mine if r["breaks"] is breaks]
            t[side] = {"right": sum(r["right"] for r in at), "lines": len(at)}
        table[context] = t
    return table
