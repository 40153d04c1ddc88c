"""The CAWS verdict: what the rule oracle rules and what the Judge must write (`schemas/verdict.schema.json`).

Status, one meaning each:
- PASS: the change breaks no clause.
- WAIVER_REQUIRED: it breaks clauses, and every breach is lifted by a valid waiver it carries: it may merge
  only with those waivers on record (`waivers_applied`).
- FAIL: some breach is not lifted (not waivable, no waiver, or the waiver is invalid, expired or too small).
`violated_clauses` are the clauses the change breaks, lifted or not; `waived_clauses` those lifted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kimi_student.arbiter.documents import CLAUSES, schema_problems

STATUSES = ("PASS", "FAIL", "WAIVER_REQUIRED")
EXIT_CODES = {"PASS": 0, "FAIL": 1, "WAIVER_REQUIRED": 3}  # 2 stays "bad input", as for every subcommand


@dataclass(frozen=True)
class Finding:
    clause: str
    rule: str
    detail: str
    subject: str = ""
    gate: str = ""  # the waivable policy gate; "" when no waiver can lift it
    disposition: str = "blocking"  # blocking | waived | warning

    def to_json(self) -> dict[str, Any]:
        out = {
            "clause": self.clause,
            "rule": self.rule,
            "disposition": self.disposition,
            "detail": self.detail,
        }
        if self.subject:
            out["subject"] = self.subject
        if self.gate:
            out["gate"] = self.gate
        return out


@dataclass(frozen=True)
class Verdict:
    status: str
    violated_clauses: tuple[str, ...]
    rationale: str
    waived_clauses: tuple[str, ...] = ()
    waivers_applied: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    budget: dict[str, int] = field(default_factory=dict)
    change_id: str = ""
    checked_at: str = ""

    def to_json(self) -> dict[str, Any]:
        """Keys in schema order; `verdict_id` is the SHA-256 of everything else, so equal rulings on equal
        inputs get equal ids."""
        body: dict[str, Any] = {
            "change_id": self.change_id,
            "checked_at": self.checked_at,
            "status": self.status,
            "violated_clauses": list(self.violated_clauses),
            "waived_clauses": list(self.waived_clauses),
            "waivers_applied": list(self.waivers_applied),
        }
        if self.budget:
            body["budget"] = dict(self.budget)
        body["findings"] = [f.to_json() for f in self.findings]
        body["rationale"] = self.rationale
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        return {"verdict_id": f"CAWS-VERDICT-{digest[:16].upper()}", **body}


def ordered_clauses(clauses: set[str] | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Clauses in the one canonical order (`documents.CLAUSES`)."""
    return tuple(c for c in CLAUSES if c in set(clauses))


def verdict_problems(obj: Any) -> tuple[str, ...]:
    """Why `obj` is not a verdict (schema, then the status/clause rules the schema cannot say); () if it is."""
    problems = schema_problems("verdict", obj)
    if problems:
        return problems
    violated, waived = obj["violated_clauses"], obj.get("waived_clauses", [])
    if obj["status"] == "PASS" and violated:
        problems += ("status: PASS with violated clauses",)
    if obj["status"] != "PASS" and not violated:
        problems += (f"status: {obj['status']} names no violated clause",)
    if not set(waived) <= set(violated):
        problems += ("waived_clauses: a waived clause that is not violated",)
    return problems
