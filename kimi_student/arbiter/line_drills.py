"""Line drills: the audit's check lines whose every operand comes before the decision (a count against its
maximum, a coverage score against its floor, two spec ids, two commits, a rationale's words against the
minimum), drawn at their boundary so that half of them break their rule, with no case around them. Training
rows only (issue 14, stop 45); the lines are written by the audit's own functions, so a drill's line is
character for character what a case's audit writes for the same facts.

Why: in a case one check line in ~16 breaks a rule, and a 135M Judge writes `ok` after every comparison.
Alone, 100 updates of a dozen such lines teach SmolLM2-135M the budget comparison (0.955 of held-out lines,
near misses included); inside a case's 2,048-token row they are a few tokens of ~1,000. A drill row is a
prompt of one sentence and 4-8 lines (~120 tokens), so the rest of a row a whole case leaves empty carries
dozens of balanced decisions.
"""

from __future__ import annotations

import functools
import json
import random
from typing import Any

from kimi_student.arbiter.audit import (
    budget_line,
    commit_line,
    fate,
    path_line,
    rationale_line,
    score_line,
    spec_line,
)
from kimi_student.arbiter.cases import MODULES, draw_context, draw_diff, rationale
from kimi_student.arbiter.diff import parse_diff
from kimi_student.arbiter.documents import spec_from
from kimi_student.arbiter.render import TRAIN_WORDINGS, render_paths, wording
from kimi_student.data.world import pool, rng_for, split_world

ASK_LINES = (
    "Check each line under CAWS: every gate blocks, and a raised maximum names the waiver that raises it. "
    "Reply with the checks as JSON."
)
RULE_CLAUSE = {  # the clause each drilled rule belongs to (oracle.py's table)
    "max_files_exceeded": "BUDGET_ADHERENCE",
    "max_loc_exceeded": "BUDGET_ADHERENCE",
    "coverage_below_floor": "GATE_INTEGRITY",
    "evidence_other_spec": "PROVENANCE",
    "evidence_other_commit": "PROVENANCE",
    "rationale_missing": "PROVENANCE",
    "path_in_scope_out": "SCOPE_BOUNDARY",
    "path_outside_scope_in": "SCOPE_BOUNDARY",
}
# Budget lines a waiver raises the maximum of, by default none: with a third raised (`files 11, tier 3 max 10,
# 11 with WV-7638: max_files_exceeded`, the rule compares with the tier's maximum though a larger number
# follows it) a 135M Judge learned the drills less well and decided 5 of 42 broken case lines; with none, 15
# of 42, its status token 40 of 40 (stop 45, README).
RAISED = 0.0
LINES = (4, 8)  # lines a drill
PATHS = (3, 8)  # changed paths a path drill
OUT_OF_SCOPE = 0.5  # the share of a path drill's paths out of scope


def _near(r: random.Random, bound: int, lo: int) -> int:
    """A value over or under `bound`, half of the time, and half of the time by 1-3 (the hard ones)."""
    step = r.randint(1, 3) if r.random() < 0.5 else r.randint(1, max(1, bound))
    return bound + step if r.random() < 0.5 else max(lo, bound - step + 1)


def _budget(r: random.Random, raised_share: float) -> tuple[str, str]:
    """As the case world draws them: 2-15 files, 10-155 lines added, tiers 1-3 (cases.draw_context)."""
    files = r.random() < 0.5
    limit = r.randint(2, 15) if files else r.randrange(10, 160, 5)
    seen = _near(r, limit, 1)
    raised, waived = None, ""
    if r.random() < raised_share:
        wid = f"WV-{r.randint(1000, 9999)}"
        raised = (limit + (r.randint(1, 8) if files else r.randrange(5, 100, 5)), wid)
        waived = wid if seen <= raised[0] else ""  # over the raised maximum too: nothing lifts it
    return budget_line("files" if files else "lines added", seen, r.choice((1, 2, 3)), limit, raised), waived


def _coverage(r: random.Random) -> tuple[str, str]:
    floor = round(r.uniform(0.6, 0.95), 2)
    step = (r.randint(1, 3) if r.random() < 0.5 else r.randint(1, 30)) / 100
    low = min(1.0, max(0.0, floor + step if r.random() < 0.5 else floor - step + 0.01))
    return score_line("coverage", round(low, 2), floor), ""


def _spec(r: random.Random, modules: list[str]) -> tuple[str, str]:
    module, n = r.choice(modules).upper(), r.randint(1, 999)
    spec_id, other = f"{module}-{n}", r.random()
    if other < 0.5:
        evidence_for = spec_id
    elif other < 0.8:  # one digit off: the near miss
        evidence_for = f"{module}-{n + r.choice((-10, -2, -1, 1, 2, 10)) if n > 10 else n + 1}"
    else:
        evidence_for = f"{r.choice(modules).upper()}-{r.randint(1, 999)}"
    return spec_line(evidence_for, spec_id), ""


def _commit(r: random.Random) -> tuple[str, str]:
    change = "".join(r.choice("0123456789abcdef") for _ in range(12))
    evidence_on, other = change, r.random()
    if 0.5 <= other < 0.75:  # one character off
        i = r.randrange(12)
        evidence_on = (
            change[:i] + r.choice([h for h in "0123456789abcdef" if h != change[i]]) + change[i + 1 :]
        )
    elif other >= 0.75:
        evidence_on = "".join(r.choice("0123456789abcdef") for _ in range(12))
    if r.random() < 0.2:  # a short sha, as manifests write them: a prefix names its commit
        evidence_on = evidence_on[:7]
    return commit_line(evidence_on, change), ""


def _rationale(r: random.Random) -> tuple[str, str]:
    need = r.choice((3, 5, 8))
    words = rationale(r, "train").split()
    have = need + r.randint(0, 4) if r.random() < 0.5 else r.randint(0, need - 1)
    words = (words * (1 + have // max(1, len(words))))[:have]
    return rationale_line(words, need), ""


@functools.cache
def _train_modules() -> list[str]:
    """The training split's module names (drawn once, not once a row)."""
    with split_world("train"):
        return pool(MODULES)


def _with_fate(line: str, waived_by: str) -> str:
    rule = line.rsplit(": ", 1)[-1]
    return f"{line} -> {fate(RULE_CLAUSE[rule], waived_by)}" if rule in RULE_CLAUSE else line


def line_drill(seed: int, i: int, raised: float = RAISED) -> dict[str, Any]:
    """Drill row `i` (prompt and target, as `judge_data.sft_row`): 4-8 lines, budgets a third of them,
    `raised` of those with a raised maximum."""
    r = rng_for("judge-line-drill", seed, "train", i)
    modules = _train_modules()
    budget = functools.partial(_budget, raised_share=raised)
    draws = (budget, budget, _coverage, _commit, _rationale)
    lines = []
    for _ in range(r.randint(*LINES)):
        kind = r.randrange(len(draws) + 1)
        line, waived_by = _spec(r, modules) if kind == len(draws) else draws[kind](r)
        lines.append(_with_fate(line, waived_by))
    return {
        "id": f"train-line-drill-{i:06d}",
        "prompt": ASK_LINES,
        "teacher_text": json.dumps({"checks": lines}, ensure_ascii=False),
    }


def path_drill(seed: int, i: int, wordings: int = TRAIN_WORDINGS) -> dict[str, Any]:
    """Path drill row `i`: a training case's spec and scope and the stat of a change of 3-8 files, about half
    of them out of scope (under a scope-out entry, another module's code, scripts the spec does not name),
    and its scope check lines, each broken one blocking. Why: a path's check is not line-local (the entry
    it falls under is in the spec), so line drills cannot hold it, and in a held-out case one path in 18 is
    out of scope: every 135M Judge wrote ` in` where the oracle wrote ` under` or ` not` (0 of 38). Learned
    in the drills, they moved the cases' path lines only beside `--drills`, which carry half a case's context
    (19 of 38; 4 alone: stop 46, README)."""
    r = rng_for("judge-path-drill", seed, "train", i)
    ctx = draw_context(r, "train")
    n = r.randint(*PATHS)
    outside = min(n - 1, sum(r.random() < OUT_OF_SCOPE for _ in range(n)))
    diff = parse_diff(draw_diff(r, ctx, "", outside, files=n))
    spec = spec_from(ctx.spec)
    lines = [_with_fate(path_line(p, spec), "") for p in dict.fromkeys(diff.paths)]
    return {
        "id": f"train-path-drill-{i:06d}",
        "prompt": render_paths(ctx, diff, wording(r, "train", wordings)),
        "teacher_text": json.dumps({"checks": lines}, ensure_ascii=False),
    }
