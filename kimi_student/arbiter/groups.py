"""A Judge asked once per group of checks (`judge data --ask groups`, `judge eval --ask groups`).

Why: a 135M Judge that reads a whole case (~1,000 tokens) decides badly what it decides well in a short
prompt (stop 46: a change's out-of-scope paths found in 62 of 72 short drills, 28 of 72 in the same changes as
whole cases: the context, not the comparison, fails to carry over). Asked once per group of checks, each
question the lines of the case that group reads (`render.render_drill`: spec head, policy and waivers, and the
group's own part), it writes the waiver lines and that group's check lines; its worksheet is the waiver lines of
its first answer and each answer's own lines, in the audit's order, and its ruling is what those lines imply
(`ruling.implied_ruling`). Every line and decision is still the Judge's; the code only chooses which lines of
the case each question shows, as a reviewer's checklist would.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kimi_student.arbiter.cases import Candidate, Context
from kimi_student.arbiter.render import DRILL_PARTS, Wording, render_drill
from kimi_student.data.world import rng_for

GROUPS = tuple(DRILL_PARTS)  # budget, scope, gates, provenance: the audit's order after its waiver lines
ASK = ("case", "groups")  # how a single case is put to the Judge: whole, or once per group


def case_of(rec: dict[str, Any], candidate: int = 0) -> tuple[Context, Candidate, Wording]:
    """A stored record's case: its context, one of its candidates and its wording."""
    ctx = Context(**rec["case"]["context"])
    return ctx, Candidate(**rec["case"]["candidates"][candidate]), Wording.from_key(rec["wording"])


def questions(ctx: Context, cand: Candidate, w: Wording) -> list[str]:
    """The case put to the Judge once per group (`GROUPS`), in the case's wording."""
    return [render_drill(ctx, cand, w, g) for g in GROUPS]


def group_rows(rec: dict[str, Any], parts: Sequence[tuple[str, str]], seed: int) -> list[dict[str, Any]]:
    """A training case's questions as training rows (prompt and target, as `judge_data.sft_row`): every group
    whose checks break a rule, and one drawn among those that break none, so that a broken line is not the
    rarity it is in a whole case (~1 line of 13) and an unbroken group still teaches `ok`. `parts`: the case's
    audit lines with their groups (`judge_data.case_parts`); each target is the waiver lines, then the group's."""
    ctx, cand, w = case_of(rec)
    broken = [g for g in GROUPS if any(grp == g and " -> " in line for grp, line in parts)]
    whole = [g for g in GROUPS if g not in broken]
    asked = broken + ([rng_for("judge-groups", seed, rec["id"]).choice(whole)] if whole else [])
    return [
        {
            "id": f"{rec['id']}-{g}",
            "prompt": render_drill(ctx, cand, w, g),
            "teacher_text": json.dumps(
                {"checks": [line for grp, line in parts if grp in ("waivers", g)]}, ensure_ascii=False
            ),
        }
        for g in GROUPS
        if g in asked
    ]
