"""The rule oracle: a change (its diff, rationale and commit) against its working spec, tier policy, evidence and
waivers, ruled clause by clause. Pure and deterministic: the time of the check is an argument, never read
from a clock here, so a waiver's expiry is decided by the caller's `now` and equal inputs give equal verdicts.

Clauses and their rules (`rule` names appear in findings; `gate` is the policy gate a waiver may lift):

| clause | rule | gate |
|---|---|---|
| BUDGET_ADHERENCE | files changed > tier max_files; lines added > tier max_loc (a waiver raises by its delta) | budget_limit |
| SCOPE_BOUNDARY | a touched path under scope.out; a touched path outside scope.in and scope.support | scope_boundary |
| GATE_INTEGRITY | tests or lint missing or failing; governed files (spec, policy, waivers) changed with code | - |
| GATE_INTEGRITY | coverage / mutation score under the tier's floor (or missing when required) | coverage_threshold / mutation_threshold |
| GATE_INTEGRITY | an acceptance criterion of the spec without passing evidence | spec_completeness |
| PROVENANCE | no diff; rationale under min_rationale_words; no evidence, evidence for another spec or commit, or not schema-valid | - |
| WAIVER_VALIDITY | a carried waiver not schema-valid, not active, expired, for another spec, a budget raise without delta or with too few approvers | - |

Governed paths are outside the scope rule (changing them is GATE_INTEGRITY's business). Lines added count
as upstream CAWS counts them: insertions only; a binary file counts as a file and no lines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from kimi_student.arbiter.diff import Diff
from kimi_student.arbiter.documents import Evidence, Policy, Spec, Waiver, parse_time
from kimi_student.arbiter.scope import matching_entry
from kimi_student.arbiter.verdict import Finding, Verdict, ordered_clauses


@dataclass(frozen=True)
class Change:
    diff: Diff
    spec: Spec
    policy: Policy
    evidence: Evidence | None = None
    waivers: tuple[Waiver, ...] = ()
    rationale: str = ""
    commit_sha: str | None = None


def waiver_problems(w: Waiver, spec: Spec, policy: Policy, now: datetime) -> list[str]:
    """Why waiver `w` lifts nothing at time `now`; [] when it is valid."""
    if w.problems:
        return [f"not a valid waiver ({w.problems[0]})"]
    out = []
    if w.status != "active":
        out.append(f"status {w.status}, not active")
    try:
        if parse_time(w.expires_at) <= now:
            out.append(f"expired at {w.expires_at}")
    except ValueError as e:
        out.append(f"expires_at: {e}")
    if w.applies_to is not None and w.applies_to != spec.id:
        out.append(f"applies to {w.applies_to}, not {spec.id}")
    if "budget_limit" in w.gates:
        if not w.has_delta:
            out.append("a budget_limit waiver without a delta")
        elif len(w.approvers) < policy.min_approvers_for_budget_raise:
            out.append(
                f"raises the budget with {len(w.approvers)} approver(s); the policy needs "
                f"{policy.min_approvers_for_budget_raise}"
            )
    return out


def _budget(change: Change, valid: list[Waiver], findings: list[Finding]) -> dict[str, int]:
    tier = change.policy.tiers[change.spec.risk_tier]
    raising = [w for w in valid if "budget_limit" in w.gates]
    max_files, max_loc = tier.max_files, tier.max_loc
    raised_files = max_files + sum(w.delta_files for w in raising)
    raised_loc = max_loc + sum(w.delta_loc for w in raising)
    d = change.diff
    checks = (
        ("max_files_exceeded", d.files_changed, max_files, raised_files, "files changed"),
        ("max_loc_exceeded", d.lines_added, max_loc, raised_loc, "lines added"),
    )
    for rule, seen, limit, raised, what in checks:
        if seen > limit:
            lifted = seen <= raised
            findings.append(
                Finding(
                    "BUDGET_ADHERENCE",
                    rule,
                    f"{seen} {what}; risk tier {change.spec.risk_tier} allows {limit}"
                    + (f", {raised} with waivers {', '.join(w.id for w in raising)}" if raising else ""),
                    gate="budget_limit",
                    disposition="waived" if lifted else "blocking",
                )
            )
    return {
        "files_changed": d.files_changed,
        "lines_added": d.lines_added,
        "lines_removed": d.lines_removed,
        "max_files": max_files,
        "max_loc": max_loc,
    }


def _governed(change: Change, path: str) -> bool:
    return matching_entry(path, change.policy.governed_paths) is not None


def _scope(change: Change, findings: list[Finding]) -> None:
    spec = change.spec
    for path in dict.fromkeys(change.diff.paths):
        if _governed(change, path):
            continue
        out = matching_entry(path, spec.scope_out)
        if out is not None:
            findings.append(
                Finding(
                    "SCOPE_BOUNDARY",
                    "path_in_scope_out",
                    f"{path} is under scope.out entry {out!r}",
                    subject=path,
                    gate="scope_boundary",
                )
            )
        elif matching_entry(path, spec.scope_in + spec.scope_support) is None:
            findings.append(
                Finding(
                    "SCOPE_BOUNDARY",
                    "path_outside_scope_in",
                    f"{path} is outside scope.in ({', '.join(spec.scope_in)})",
                    subject=path,
                    gate="scope_boundary",
                )
            )


def _gates(change: Change, findings: list[Finding]) -> None:
    paths = change.diff.paths
    governed = [p for p in paths if _governed(change, p)]
    if governed and len(governed) < len(paths) and not change.policy.policy_and_code_same_change:
        findings.append(
            Finding(
                "GATE_INTEGRITY",
                "governance_edited_with_code",
                f"changes governed files ({', '.join(sorted(set(governed)))}) and code in one change",
                subject=sorted(governed)[0],
            )
        )
    ev = change.evidence
    if ev is None:
        return  # PROVENANCE reports the missing manifest; every gate below would repeat it
    tier = change.policy.tiers[change.spec.risk_tier]
    for kind in ("tests", "lint"):
        items = ev.of(kind)
        if not items:
            if kind in change.policy.required_evidence:
                findings.append(Finding("GATE_INTEGRITY", f"{kind}_missing", f"no {kind} evidence"))
        elif not all(i.passed for i in items):
            bad = next(i for i in items if not i.passed)
            findings.append(
                Finding(
                    "GATE_INTEGRITY",
                    f"{kind}_failed",
                    f"{kind} {bad.status}"
                    + (f" (exit code {bad.exit_code})" if bad.exit_code else "")
                    + (f": {bad.command}" if bad.command else ""),
                    subject=bad.command or "",
                )
            )
    for kind, floor, gate in (
        ("coverage", tier.coverage_min, "coverage_threshold"),
        ("mutation", tier.mutation_min, "mutation_threshold"),
    ):
        items = [i for i in ev.of(kind) if i.value is not None]
        if not items:
            if kind in change.policy.required_evidence:
                findings.append(Finding("GATE_INTEGRITY", f"{kind}_missing", f"no {kind} score", gate=gate))
        elif floor is not None and min(i.value for i in items) < floor:
            low = min(i.value for i in items)
            findings.append(
                Finding(
                    "GATE_INTEGRITY",
                    f"{kind}_below_floor",
                    f"{kind} {low:.2f} under tier {change.spec.risk_tier}'s floor {floor:.2f}",
                    gate=gate,
                )
            )
    verified = {i.criterion_id for i in ev.of("acceptance") if i.passed}
    for c in change.spec.acceptance:
        if c.id not in verified:
            findings.append(
                Finding(
                    "GATE_INTEGRITY",
                    "acceptance_unverified",
                    f"acceptance criterion {c.id} has no passing evidence",
                    subject=c.id,
                    gate="spec_completeness",
                )
            )


def _provenance(change: Change, findings: list[Finding]) -> None:
    if not change.diff.files:
        findings.append(Finding("PROVENANCE", "diff_missing", "the change has no diff"))
    words = len(change.rationale.split())
    if words < change.policy.min_rationale_words:
        findings.append(
            Finding(
                "PROVENANCE",
                "rationale_missing",
                f"rationale of {words} word(s); the policy needs {change.policy.min_rationale_words}",
            )
        )
    ev = change.evidence
    if ev is None:
        findings.append(Finding("PROVENANCE", "evidence_missing", "no evidence manifest"))
        return
    if ev.problems:
        findings.append(Finding("PROVENANCE", "evidence_invalid", f"evidence manifest: {ev.problems[0]}"))
    if ev.spec_id is not None and ev.spec_id != change.spec.id:
        findings.append(
            Finding(
                "PROVENANCE",
                "evidence_other_spec",
                f"evidence is for {ev.spec_id}, the change for {change.spec.id}",
            )
        )
    a, b = ev.commit_sha, change.commit_sha
    if a and b and not (a.startswith(b) or b.startswith(a)):
        findings.append(
            Finding(
                "PROVENANCE",
                "evidence_other_commit",
                f"evidence was produced on {a[:12]}, the change is {b[:12]}",
            )
        )


def found(change: Change, now: datetime) -> tuple[list[Finding], list[Waiver], dict[str, int]]:
    """Every rule `change` breaks at `now`, in the oracle's order (waivers, budget, scope, gates,
    provenance), before the policy's gate modes and the waivers rule on them; the valid waivers; the
    budget's figures."""
    findings: list[Finding] = []
    valid: list[Waiver] = []
    for w in change.waivers:
        problems = waiver_problems(w, change.spec, change.policy, now)
        if problems:
            findings.append(
                Finding(
                    "WAIVER_VALIDITY", "waiver_invalid", f"waiver {w.id}: {'; '.join(problems)}", subject=w.id
                )
            )
        else:
            valid.append(w)
    budget = _budget(change, valid, findings)
    _scope(change, findings)
    _gates(change, findings)
    _provenance(change, findings)
    return findings, valid, budget


def check(change: Change, now: datetime) -> Verdict:
    """Rule on `change` at time `now` (timezone-aware)."""
    findings, valid, budget = found(change, now)

    applied: set[str] = set()
    ruled = []
    for f in findings:
        if f.gate and change.policy.mode(f.gate) == "skip":
            continue
        if f.gate and change.policy.mode(f.gate) == "warn":
            f = replace(f, disposition="warning")
        elif f.gate == "budget_limit":  # lifted (or not) by the raised budget above
            if f.disposition == "waived":
                applied.update(
                    w.id for w in valid if "budget_limit" in w.gates and (w.delta_files or w.delta_loc)
                )
        elif f.gate:
            lifting = [w.id for w in valid if f.gate in w.gates]
            if lifting:
                f = replace(f, disposition="waived")
                applied.update(lifting)
        ruled.append(f)

    violated = ordered_clauses({f.clause for f in ruled if f.disposition != "warning"})
    blocking = ordered_clauses({f.clause for f in ruled if f.disposition == "blocking"})
    waived = tuple(c for c in violated if c not in blocking)
    status = "FAIL" if blocking else "WAIVER_REQUIRED" if violated else "PASS"
    return Verdict(
        status,
        violated,
        rationale(status, ruled, sorted(applied)),
        waived,
        tuple(sorted(applied)),
        tuple(ruled),
        budget,
        change.spec.id,
        now.isoformat(),
    )


def rationale(status: str, findings: list[Finding], applied: list[str]) -> str:
    """One sentence per clause that decided the status, in clause order."""
    if status == "PASS":
        warn = [f for f in findings if f.disposition == "warning"]
        return (
            "PASS: no clause is violated"
            + (f" ({len(warn)} warning(s): {warn[0].detail})" if warn else "")
            + "."
        )
    parts = []
    for clause in ordered_clauses({f.clause for f in findings if f.disposition != "warning"}):
        mine = [f for f in findings if f.clause == clause and f.disposition != "warning"]
        lifted = all(f.disposition == "waived" for f in mine)
        shown = "; ".join(f.detail for f in mine[:3]) + (
            f"; and {len(mine) - 3} more" if len(mine) > 3 else ""
        )
        parts.append(f"{clause} {'waived' if lifted else 'violated'}: {shown}.")
    tail = f" Waivers applied: {', '.join(applied)}." if applied else ""
    return f"{status}: " + " ".join(parts) + tail
