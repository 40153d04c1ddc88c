"""What the Judge reads: a case as a human reviewer sees it (spec, the tier's policy, the check time, the
author's rationale, `git diff --stat`, evidence, waivers, then the diff cut to fit), written in one of
several wordings. Pure.

A wording picks a variant on each axis (section names, budget line, evidence lines, waiver lines, dates).
Training cases use the training variants of every axis (`TRAIN_VARIANTS`, the first four by default);
held-out cases use variants no training case uses (`wording(r, split)`), so a judge cannot key on a phrase.
Every variant states the same facts, and no variant states a finding: the text says "12 files" and "at most
10", never "over budget".
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime

from kimi_student.arbiter.cases import Candidate, Context
from kimi_student.arbiter.diff import Diff, parse_diff

SECTIONS = (  # spec, policy, time, rationale, stat, evidence, waivers, diff
    (
        "## Working spec",
        "## Tier policy",
        "Checked at",
        "## Rationale",
        "## Diff stat",
        "## Evidence",
        "## Waivers",
        "## Diff",
    ),
    ("[spec]", "[policy]", "now", "[why]", "[stat]", "[evidence]", "[waivers]", "[patch]"),
    ("SPEC:", "POLICY:", "DATE:", "DESCRIPTION:", "FILES:", "CHECKS:", "WAIVERS:", "CHANGES:"),
    ("Spec", "Budget", "Review time", "Message", "Summary", "Results", "Exceptions", "Patch"),
    # held out
    (
        "### The spec",
        "### Limits",
        "Evaluated on",
        "### Author's note",
        "### Touched files",
        "### Test results",
        "### Granted waivers",
        "### Hunks",
    ),
    ("<spec>", "<limits>", "<time>", "<note>", "<files>", "<checks>", "<waivers>", "<diff>"),
    # training again (stop 50: `--train-wordings 8`)
    ("# SPEC", "# POLICY", "Check time", "# COMMIT MESSAGE", "# STAT", "# EVIDENCE", "# WAIVERS", "# DIFF"),
    (
        "== spec ==",
        "== policy ==",
        "As of",
        "== message ==",
        "== diffstat ==",
        "== evidence ==",
        "== waivers ==",
        "== diff ==",
    ),
    (
        "Specification",
        "Risk policy",
        "Timestamp",
        "Commit message",
        "Files in the change",
        "Evidence manifest",
        "Waivers on file",
        "Unified diff",
    ),
    ("spec>", "policy>", "at", "msg>", "stat>", "evidence>", "waivers>", "diff>"),
)
BUDGET = (
    "risk tier {t}: at most {f} files and {l} lines added; coverage at least {c}",
    "risk_tier {t} -> max_files={f} max_loc={l} coverage_min={c}",
    "Tier {t} budget: {f} files / {l} LOC, coverage floor {c}",
    "{f} files and {l} added lines allowed (tier {t}); coverage {c} or more",
    # held out
    "the budget for tier {t} is {f} files with {l} insertions, minimum coverage {c}",
    "T{t}: files<={f} loc<={l} cov>={c}",
    # training again
    "tier {t} limits: files {f}, lines added {l}, coverage {c} minimum",
    "[tier {t}] max_files {f} | max_loc {l} | min_coverage {c}",
    "Risk tier {t} allows up to {f} files and {l} new lines; coverage must reach {c}",
    "tier{t}.max_files={f} tier{t}.max_loc={l} tier{t}.coverage_min={c}",
)
EVIDENCE = (  # (check passed, check failed, score, acceptance passed, acceptance failed, manifest line)
    (
        "{k}: pass (exit {e})",
        "{k}: fail (exit {e})",
        "{k}: {v}",
        "acceptance {a}: pass",
        "acceptance {a}: fail",
        "manifest for {s} at commit {h}",
    ),
    ("✓ {k} (exit {e})", "✗ {k} (exit {e})", "{k} = {v}", "✓ {a}", "✗ {a}", "spec {s}, revision {h}"),
    ("{k}=pass exit={e}", "{k}=fail exit={e}", "{k}={v}", "{a}=pass", "{a}=fail", "spec_id={s} commit={h}"),
    (
        "{k} passed, exit code {e}",
        "{k} failed, exit code {e}",
        "{k} score {v}",
        "criterion {a} passed",
        "criterion {a} failed",
        "evidence of {s} recorded on {h}",
    ),
    # held out
    (
        "{k} ok [{e}]",
        "{k} broken [{e}]",
        "{k} measured at {v}",
        "{a} verified",
        "{a} not verified",
        "{s} @ {h}",
    ),
    (
        "- {k}: green ({e})",
        "- {k}: red ({e})",
        "- {k}: {v}",
        "- {a}: green",
        "- {a}: red",
        "run for {s} on {h}",
    ),
    # training again
    (
        "[pass] {k} (code {e})",
        "[fail] {k} (code {e})",
        "[score] {k} {v}",
        "[pass] {a}",
        "[fail] {a}",
        "evidence: spec {s}, sha {h}",
    ),
    (
        "{k}: OK, exit status {e}",
        "{k}: FAILURE, exit status {e}",
        "{k} value {v}",
        "{a}: met",
        "{a}: not met",
        "for {s} at {h}",
    ),
    (
        "{k} passing rc={e}",
        "{k} failing rc={e}",
        "{k} {v}",
        "{a} passing",
        "{a} failing",
        "recorded for {s} / {h}",
    ),
    (
        "{k} succeeded (exit {e})",
        "{k} did not succeed (exit {e})",
        "{k} came out at {v}",
        "acceptance criterion {a} met",
        "acceptance criterion {a} unmet",
        "collected for spec {s}, commit {h}",
    ),
)
WAIVER = (
    "{id}: lifts {gates}{delta} for {spec}; {status}; expires {exp}; approved by {appr}; reason {reason}",
    "{id} gates={gates}{delta} applies_to={spec} status={status} expires_at={exp} approvers={appr}",
    "waiver {id} ({reason}) on {gates}{delta}, spec {spec}, {status} until {exp}, signed {appr}",
    "{id} | {gates}{delta} | {spec} | {status} | {exp} | {appr}",
    # held out
    "exception {id} covers {gates}{delta} of {spec}, state {status}, valid through {exp}, approvers: {appr}",
    "{id}: {gates}{delta}; for={spec}; {status}; ends {exp}; by {appr}",
    # training again
    "{id} on {gates}{delta}, for {spec}, status {status}, expiring {exp}, approvers {appr} ({reason})",
    "- {id} [{gates}{delta}] spec={spec} state={status} expiry={exp} approved_by={appr}",
    "Waiver {id} ({reason}): {gates}{delta} | applies to {spec} | {status} | until {exp} | {appr}",
    "{id}; gates: {gates}{delta}; spec: {spec}; status: {status}; expires: {exp}; approvers: {appr}",
)
DATES = (  # 0-3 write two forms (a 135M Judge copied held-out forms badly: stop 49); 6-9 four more
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%d %H:%M UTC",
    "%Y-%m-%dT%H:%M:%SZ",
    "%d %b %Y %H:%M UTC",
    "%Y-%m-%d %H:%M:%S +00:00",
    # training again
    "%a, %d %b %Y %H:%M:%S GMT",
    "%B %d, %Y %H:%M UTC",
    "%Y/%m/%d %H:%M UTC",
    "%d.%m.%Y %H:%M UTC",
)
RATIONALE_WORDS = (  # the policy's min_rationale_words: without it a terse message's ruling is a guess
    "rationale: at least {n} words",
    "min_rationale_words={n}",
    "Rationale minimum: {n} words",
    "a rationale of {n} or more words",
    # held out
    "the author's note needs {n}+ words",
    "note>={n} words",
    # training again
    "rationale needs {n} words or more",
    "min words in rationale: {n}",
    "The commit message must have at least {n} words",
    "rationale.min_words={n}",
)
# What the Judge is asked, the same in every case (no status or clause word: the targets teach those)
ASK_SINGLE = "Rule on this change under CAWS. Reply with the verdict as JSON."
ASK_PAIR = (
    "Two changes for the same spec: which one should merge? Reply with JSON naming the winner: a, b or tie."
)
# A drill: one group of the audit's checks alone, on the lines of the case it reads (training only, issue 14
# stop 43). Every drill keeps the spec's head, the policy's lines (tier, gate modes, approvals, check time) and
# the waivers, which every check's fate depends on; DRILL_PARTS adds what its checks compare.
ASK_DRILL = "Check this change's {family} under CAWS. Reply with the checks as JSON."
# A path drill: the scope checks alone on a change whose paths are half out of scope (stop 46)
ASK_PATHS = (
    "Check each changed path against the spec's scope under CAWS: every gate blocks. "
    "Reply with the checks as JSON."
)
DRILL_ALWAYS = frozenset(("spec", "policy", "waivers"))
DRILL_PARTS = {
    "budget": frozenset(("budget", "stat")),
    "scope": frozenset(("scope", "stat")),
    "gates": frozenset(("budget", "acceptance", "evidence", "stat")),
    "provenance": frozenset(("words", "message", "stat", "evidence")),
}
# Variants 4-5 of every axis are held-out wordings; training cases draw from the first `train_wordings` of
# TRAIN_VARIANTS: 4 by default (the wordings of stops 40-49, their datasets byte-identical); 8 (stop 50) made
# a 135M Judge copy held-out dates better (waiver lines exact 15 of 53 against 7) but rule no better
TRAIN_VARIANTS = (0, 1, 2, 3, 6, 7, 8, 9)
HELDOUT_VARIANTS = (4, 5)
TRAIN_WORDINGS = 4
AXES = ("sections", "budget", "evidence", "waiver", "dates")


@dataclass(frozen=True)
class Wording:
    sections: int
    budget: int
    evidence: int
    waiver: int
    dates: int
    all_tiers: bool

    @property
    def key(self) -> str:
        return f"s{self.sections}b{self.budget}e{self.evidence}w{self.waiver}d{self.dates}{'t' if self.all_tiers else ''}"

    @classmethod
    def from_key(cls, key: str) -> Wording:
        m = re.fullmatch(r"s(\d+)b(\d+)e(\d+)w(\d+)d(\d+)(t?)", key)
        if not m:
            raise ValueError(f"not a wording key: {key!r}")
        return cls(*(int(g) for g in m.groups()[:5]), all_tiers=m.group(6) == "t")


def wording(r: random.Random, split: str, train_wordings: int = TRAIN_WORDINGS) -> Wording:
    """Training: every axis from the first `train_wordings` training variants. Held-out: every axis from the
    held-out variants."""
    if split == "train":
        return Wording(
            *(TRAIN_VARIANTS[r.randrange(train_wordings)] for _ in AXES), all_tiers=r.random() < 0.3
        )
    lo, hi = HELDOUT_VARIANTS[0], HELDOUT_VARIANTS[-1] + 1
    return Wording(*(r.randrange(lo, hi) for _ in AXES), all_tiers=r.random() < 0.3)


def _date(text: str, w: Wording) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).strftime(DATES[w.dates])


def _context_parts(ctx: Context, w: Wording) -> list[tuple[str, str]]:
    """The context's lines, each with the part of the case it states (what a drill keeps: `DRILL_PARTS`)."""
    sec = SECTIONS[w.sections]
    s = ctx.spec
    scope = s["scope"]
    parts = [
        ("spec", sec[0]),
        ("spec", f"{s['id']}: {s['title']} (risk tier {s['risk_tier']})"),
        ("scope", f"scope in: {', '.join(scope['in'])}"),
        ("scope", f"scope out: {', '.join(scope['out'])}"),
        ("scope", f"support: {', '.join(scope['support'])}"),
    ]
    if s["acceptance"]:
        parts.append(
            (
                "acceptance",
                "acceptance: "
                + "; ".join(f"{a['id']} when {a['when']} then {a['then']}" for a in s["acceptance"]),
            )
        )
    parts.append(("policy", sec[1]))
    tiers = sorted(ctx.policy["risk_tiers"]) if w.all_tiers else [str(s["risk_tier"])]
    for t in tiers:
        b = ctx.policy["risk_tiers"][t]
        parts.append(
            (
                "budget",
                BUDGET[w.budget].format(t=t, f=b["max_files"], l=b["max_loc"], c=f"{b['coverage_min']:.2f}"),
            )
        )
    modes = [
        f"{g} {v['mode']}"
        for g, v in sorted(ctx.policy["gates"].items())
        if v.get("mode", "block") != "block"
    ]
    parts.append(("policy", "gates: all block" + (f" except {', '.join(modes)}" if modes else "")))
    parts.append(
        (
            "policy",
            f"budget raises need {ctx.policy['waivers']['min_approvers_for_budget_raise']} approver(s)",
        )
    )
    parts.append(("words", RATIONALE_WORDS[w.budget].format(n=ctx.policy["min_rationale_words"])))
    parts.append(
        (
            "policy",
            f"{sec[2]}: {_date(ctx.now, w)}"
            if not sec[2].startswith("<")
            else f"{sec[2]} {_date(ctx.now, w)}",
        )
    )
    return parts


def _context_lines(ctx: Context, w: Wording) -> list[str]:
    return [line for _, line in _context_parts(ctx, w)]


def _candidate_parts(ctx: Context, c: Candidate, w: Wording, label: str = "") -> list[tuple[str, str]]:
    """A candidate's lines, each with the part of the case it states."""
    sec = SECTIONS[w.sections]
    ev = EVIDENCE[w.evidence]
    head = (lambda name: f"{name} ({label})") if label else (lambda name: name)
    parts = [("message", head(sec[3])), ("message", f"{c.rationale} (commit {c.commit_sha[:12]})")]
    parts += [("stat", line) for line in [head(sec[4]), *parse_diff(c.diff).stat().splitlines()]]
    lines = [head(sec[5])]
    if c.evidence is None:
        lines.append("(none)")
    else:
        e = c.evidence
        lines.append(ev[5].format(s=e["spec_id"], h=e["commit_sha"]))
        for it in e["items"]:
            if it["kind"] == "acceptance":
                lines.append(ev[3 if it["status"] == "pass" else 4].format(a=it["criterion_id"]))
            elif "value" in it:
                lines.append(ev[2].format(k=it["kind"], v=f"{it['value']:.2f}"))
            else:
                lines.append(
                    ev[0 if it["status"] == "pass" else 1].format(k=it["kind"], e=it.get("exit_code", 0))
                )
    parts += [("evidence", line) for line in lines]
    lines = [head(sec[6])]
    if not c.waivers:
        lines.append("(none)")
    for wv in c.waivers:
        d = wv.get("delta")
        delta = f" (+{d.get('max_files', 0)} files, +{d.get('max_loc', 0)} lines)" if d else ""
        lines.append(
            WAIVER[w.waiver].format(
                id=wv["id"],
                gates=", ".join(wv["gates"]),
                delta=delta,
                spec=wv.get("applies_to", "any spec"),
                status=wv["status"],
                exp=_date(wv["expires_at"], w),
                appr=", ".join(a["handle"] for a in wv["approvers"]),
                reason=wv["reason_code"],
            )
        )
    return parts + [("waivers", line) for line in lines]


def _candidate_lines(ctx: Context, c: Candidate, w: Wording, label: str = "") -> list[str]:
    return [line for _, line in _candidate_parts(ctx, c, w, label)]


def render_single(ctx: Context, c: Candidate, w: Wording, diff_chars: int = 600) -> str:
    """One change for review; the diff last, cut at a line boundary to `diff_chars`."""
    lines = [ASK_SINGLE] + _context_lines(ctx, w) + _candidate_lines(ctx, c, w) + [SECTIONS[w.sections][7]]
    body, used = [], 0
    diff_lines = c.diff.splitlines()
    for i, line in enumerate(diff_lines):
        if used + len(line) + 1 > diff_chars:
            body.append(f"... ({len(diff_lines) - i} more lines)")
            break
        body.append(line)
        used += len(line) + 1
    return "\n".join(lines + body)


def render_drill(ctx: Context, c: Candidate, w: Wording, family: str) -> str:
    """The lines of a single case that one group of checks reads (`DRILL_PARTS`), in the case's order and
    wording: a drill is a few hundred tokens where a whole case is over a thousand."""
    keep = DRILL_ALWAYS | DRILL_PARTS[family]
    parts = _context_parts(ctx, w) + _candidate_parts(ctx, c, w)
    return "\n".join([ASK_DRILL.format(family=family)] + [line for part, line in parts if part in keep])


def render_paths(ctx: Context, diff: Diff, w: Wording) -> str:
    """A path drill's prompt (training only, `line_drills.path_drill`): the spec's head and scope and a diff's
    stat, in the case's order and wording, and nothing else a case states."""
    spec = [line for part, line in _context_parts(ctx, w) if part in ("spec", "scope")]
    return "\n".join([ASK_PATHS, *spec, SECTIONS[w.sections][4], *diff.stat().splitlines()])


def render_pair(ctx: Context, a: Candidate, b: Candidate, w: Wording) -> str:
    """Two changes for the same spec: the shared context once, then each candidate (stat, no diff body)."""
    return "\n".join(
        [ASK_PAIR]
        + _context_lines(ctx, w)
        + _candidate_lines(ctx, a, w, "A")
        + _candidate_lines(ctx, b, w, "B")
    )
