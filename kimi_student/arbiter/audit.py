"""The oracle's worksheet: every check the rule oracle makes on a change, one line each, with the values it
compares and what the comparison gave. Pure.

A Judge trained to write these lines before its ruling never rules in one step: each line is a copy of facts
from the case plus one local comparison (files against the tier's maximum, a path against the scope entry
that admits it, an expiry against the check time). A line that breaks a rule ends with the rule's name as
the oracle's findings name it and, on the same line, what became of it: `-> CLAUSE blocking`, `waived by`
the waiver(s) that lift it, `warning` where its gate only warns, `skipped` where the policy turns its gate
off. The fate stands where the rule fires (a 135M Judge that wrote the fates as a list after every check
invented findings its own lines never named: stop 42), and the status follows from the fates. The lines are
recomputed here from the same documents and helpers the oracle uses; `oracle.found` gives the findings they
are matched with, in order, and a test holds them to the oracle's verdicts on generated cases
(`tests/unit/arbiter/test_judge_audit.py`).
"""

from __future__ import annotations

from datetime import datetime

from kimi_student.arbiter.documents import Spec, Waiver, parse_time
from kimi_student.arbiter.oracle import Change, found, waiver_problems
from kimi_student.arbiter.scope import matching_entry
from kimi_student.arbiter.verdict import Finding, Verdict

OK = "ok"
# every rule a finding names: a check line ending in one breaks it
RULES = frozenset(
    (
        "max_files_exceeded", "max_loc_exceeded", "path_in_scope_out", "path_outside_scope_in",
        "governance_edited_with_code", "tests_missing", "tests_failed", "lint_missing", "lint_failed",
        "coverage_missing", "coverage_below_floor", "mutation_missing", "mutation_below_floor",
        "acceptance_unverified", "diff_missing", "rationale_missing", "evidence_missing", "evidence_invalid",
        "evidence_other_spec", "evidence_other_commit", "waiver_invalid",
    )
)  # fmt: skip
ISO_MINUTES = "%Y-%m-%d %H:%M"  # times when the caller does not say how its case writes them


WAIVER_LINE = "waiver "  # how every waiver's check line starts (no other check line does)


def _waiver_line(w: Waiver, change: Change, now: datetime, dates: str) -> str:
    """A waiver's check line: each fact its validity rests on (status, expiry against the check time, the
    spec it is for, a budget raise's delta and approvers), then valid or waiver_invalid."""
    spec, policy = change.spec, change.policy
    head = f"{WAIVER_LINE}{w.id} on {', '.join(w.gates) or 'no gate'}"
    if w.problems:
        return f"{head}: not schema-valid: waiver_invalid"
    facts = [w.status if w.status == "active" else f"{w.status}, not active"]
    try:
        exp = parse_time(w.expires_at)
        after = exp > now
        facts.append(f"expires {exp:{dates}} {'after' if after else 'not after'} now {now:{dates}}")
    except ValueError:
        facts.append("expiry unreadable")
    if w.applies_to is None:
        facts.append("for any spec")
    else:
        facts.append(f"for {w.applies_to}" + ("" if w.applies_to == spec.id else f", not {spec.id}"))
    if "budget_limit" in w.gates:
        if w.has_delta:
            facts.append(f"+{w.delta_files} files +{w.delta_loc} lines")
            facts.append(f"{len(w.approvers)} approver(s), {policy.min_approvers_for_budget_raise} needed")
        else:
            facts.append("no delta")
    ok = not waiver_problems(w, spec, policy, now)
    return f"{head}: {'; '.join(facts)}: {'valid' if ok else 'waiver_invalid'}"


def _budget_lines(change: Change, valid: list[Waiver]) -> list[str]:
    tier_no = change.spec.risk_tier
    tier = change.policy.tiers[tier_no]
    raising = [w for w in valid if "budget_limit" in w.gates]
    ids = ", ".join(w.id for w in raising)
    out = []
    for what, seen, limit, delta in (
        ("files", change.diff.files_changed, tier.max_files, sum(w.delta_files for w in raising)),
        ("lines added", change.diff.lines_added, tier.max_loc, sum(w.delta_loc for w in raising)),
    ):
        out.append(budget_line(what, seen, tier_no, limit, (limit + delta, ids) if raising else None))
    return out


def budget_line(what: str, seen: int, tier: int, limit: int, raised: tuple[int, str] | None = None) -> str:
    """`what` (files, lines added) against the tier's maximum; `raised`: the maximum valid waivers raise it
    to and their ids (the rule still compares with the tier's maximum: the waivers lift its finding)."""
    rule = "max_files" if what == "files" else "max_loc"
    mark = f", {raised[0]} with {raised[1]}" if raised else ""
    return f"{what} {seen}, tier {tier} max {limit}{mark}: {OK if seen <= limit else rule + '_exceeded'}"


def score_line(kind: str, low: float, floor: float) -> str:
    """The lowest `kind` (coverage, mutation) score against the tier's floor, each with two decimals, or with
    as many as it takes for the printed values to compare as the unrounded ones do (0.7299 against 0.73 is
    under the floor, and `0.73, tier floor 0.73: coverage_below_floor` would teach a wrong comparison)."""
    digits = 2
    while digits < 6 and (round(low, digits) >= round(floor, digits)) != (low >= floor):
        digits += 1
    return (
        f"{kind} {low:.{digits}f}, tier floor {floor:.{digits}f}: "
        f"{OK if low >= floor else kind + '_below_floor'}"
    )


def spec_line(evidence_for: str, spec_id: str) -> str:
    return f"evidence for {evidence_for}, change for {spec_id}: {OK if evidence_for == spec_id else 'evidence_other_spec'}"


def commit_line(evidence_on: str, change: str) -> str:
    """Two commit shas agree when one is a prefix of the other (a short sha names its commit)."""
    same = evidence_on.startswith(change) or change.startswith(evidence_on)
    return f"evidence on {evidence_on[:12]}, change {change[:12]}: {OK if same else 'evidence_other_commit'}"


def _scope_lines(change: Change) -> list[str]:
    return [
        path_line(path, change.spec, change.policy.governed_paths)
        for path in dict.fromkeys(change.diff.paths)
    ]


def path_line(path: str, spec: Spec, governed_paths: tuple[str, ...] = ()) -> str:
    """A changed path against the policy's governed paths and the spec's scope: out first, then in or
    support."""
    governed = matching_entry(path, governed_paths)
    excluded = matching_entry(path, spec.scope_out)
    admitted = matching_entry(path, spec.scope_in + spec.scope_support)
    if governed is not None:
        return f"{path}: governed ({governed})"
    if excluded is not None:
        return f"{path}: under scope out {excluded}: path_in_scope_out"
    if admitted is not None:
        return f"{path}: in {admitted}: {OK}"
    return f"{path}: not in scope in or support: path_outside_scope_in"


def _gate_lines(change: Change) -> list[str]:
    policy, out = change.policy, []
    paths = change.diff.paths
    governed = [p for p in paths if matching_entry(p, policy.governed_paths) is not None]
    if governed and len(governed) < len(paths):  # the oracle's test, word for word
        allowed = policy.policy_and_code_same_change
        out.append(f"governed files with code: {'allowed' if allowed else 'governance_edited_with_code'}")
    ev = change.evidence
    if ev is None:
        return out
    tier = policy.tiers[change.spec.risk_tier]
    for kind in ("tests", "lint"):
        items = ev.of(kind)
        if not items:
            required = kind in policy.required_evidence
            out.append(f"{kind}: no evidence: {kind + '_missing' if required else 'not required'}")
        else:
            bad = next((i for i in items if not i.passed), None)
            exit_code = f" (exit {bad.exit_code})" if bad is not None and bad.exit_code else ""
            out.append(f"{kind}: pass" if bad is None else f"{kind}: {bad.status}{exit_code}: {kind}_failed")
    for kind, floor in (("coverage", tier.coverage_min), ("mutation", tier.mutation_min)):
        values = [i.value for i in ev.of(kind) if i.value is not None]
        if not values:
            if kind in policy.required_evidence:
                out.append(f"{kind}: no score: {kind}_missing")
        elif floor is None:
            out.append(f"{kind} {min(values):.2f}: no floor")
        else:
            out.append(score_line(kind, min(values), floor))
    passed = {i.criterion_id for i in ev.of("acceptance") if i.passed}
    seen = {i.criterion_id for i in ev.of("acceptance")}
    for c in change.spec.acceptance:
        if c.id in passed:
            out.append(f"{c.id}: pass")
        else:
            out.append(f"{c.id}: {'fail' if c.id in seen else 'no evidence'}: acceptance_unverified")
    return out


def rationale_line(words: list[str], need: int) -> str:
    """The words numbered up to the minimum: counting becomes copying with a running number (a 135M Judge
    got no bare word count right, stop 41), and the line stays short however long the message."""
    if need == 0:
        return f"rationale: 0 words needed: {OK}"
    shown = " ".join(f"{w}({i})" for i, w in enumerate(words[:need], 1))
    head = f"rationale {shown}" if shown else "rationale: no words"
    return f"{head}: {min(len(words), need)} of {need} needed: {OK if len(words) >= need else 'rationale_missing'}"


def _provenance_lines(change: Change) -> list[str]:
    out = []
    if not change.diff.files:
        out.append("diff: none: diff_missing")
    out.append(rationale_line(change.rationale.split(), change.policy.min_rationale_words))
    ev, spec = change.evidence, change.spec
    if ev is None:
        out.append("evidence: none: evidence_missing")
        return out
    if ev.problems:
        out.append("evidence: not schema-valid: evidence_invalid")
    if ev.spec_id is not None:
        out.append(spec_line(ev.spec_id, spec.id))
    if ev.commit_sha and change.commit_sha:
        out.append(commit_line(ev.commit_sha, change.commit_sha))
    return out


def _fate(f: Finding, valid: list[Waiver]) -> str:
    """What the verdict made of a finding `f` (as ruled: its disposition set)."""
    if f.disposition == "waived":
        return fate(f.clause, ", ".join(w.id for w in valid if f.gate in w.gates))
    if f.disposition == "warning":
        return f"{f.clause} warning ({f.gate} warns)"
    return fate(f.clause)


def fate(clause: str, waived_by: str = "") -> str:
    """A blocking finding's fate, or one lifted by the waivers `waived_by` names."""
    return f"{clause} waived by {waived_by}" if waived_by else f"{clause} blocking"


FAMILIES = ("waivers", "budget", "scope", "gates", "provenance")  # the audit's groups of checks, in order


def audit_parts(
    change: Change, now: datetime, verdict: Verdict, dates: str = ISO_MINUTES
) -> list[tuple[str, str]]:
    """`audit`'s lines, each with the group of checks (`FAMILIES`) it belongs to."""
    findings, valid, _ = found(change, now)
    ruled = iter(verdict.findings)  # the findings in order, less those of a gate the policy skips
    fates = [
        f"{f.clause} skipped ({f.gate} is off)"
        if f.gate and change.policy.mode(f.gate) == "skip"
        else _fate(next(ruled), valid)
        for f in findings
    ]
    parts = [("waivers", _waiver_line(w, change, now, dates)) for w in change.waivers]
    parts += [("budget", line) for line in _budget_lines(change, valid)]
    parts += [("scope", line) for line in _scope_lines(change)]
    parts += [("gates", line) for line in _gate_lines(change)]
    parts += [("provenance", line) for line in _provenance_lines(change)]
    broken = [i for i, (_, line) in enumerate(parts) if broken_rule(line) is not None]
    if [broken_rule(parts[i][1]) for i in broken] != [f.rule for f in findings]:
        raise AssertionError(f"the audit's lines and the oracle's findings disagree: {parts} {findings}")
    for i, fate in zip(broken, fates, strict=True):
        parts[i] = (parts[i][0], f"{parts[i][1]} -> {fate}")
    return parts


def broken_rule(line: str) -> str | None:
    """The rule a check line (before its fate) breaks, if it breaks one."""
    end = line.rsplit(": ", 1)[-1]
    return end if end in RULES else None


def audit(change: Change, now: datetime, verdict: Verdict, dates: str = ISO_MINUTES) -> list[str]:
    """The oracle's checks on `change` at `now`, in the oracle's order (waivers, budget, scope, gates,
    provenance), each line that breaks a rule ending in `-> ` and that finding's fate in `verdict` (the
    oracle's verdict on the same change). `dates`: the strftime format the case writes its times in, so that
    a time is copied as the case shows it (a Judge that had to translate `13 Sep 2027` into another form
    failed to: stop 41)."""
    return [line for _, line in audit_parts(change, now, verdict, dates)]
