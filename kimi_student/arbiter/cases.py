"""Judge cases: a change (its diff, rationale and commit) with the working spec, tier policy, evidence and
waivers it is checked against. Drawn so that every status and clause is common, and labelled by the rule
oracle alone: the draw aims at a status, the oracle says what the case is (`label`), and a case whose
aim the oracle does not confirm keeps the oracle's label.

Nothing a candidate's own text holds (its diff and rationale) decides its label without the context: a
budget is drawn relative to the diff (over or within it, at every size), the same paths are in scope for
one spec and out for another, and rationales come from one pool whatever the aim. Each split draws its
modules, file names and rationales from its own part of every pool (`data.world.pool`), so held-out cases
hold no path or sentence a training case holds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from kimi_student.arbiter.diff import parse_diff
from kimi_student.arbiter.documents import evidence_from, policy_from, spec_from, waiver_from
from kimi_student.arbiter.oracle import Change, check
from kimi_student.arbiter.scope import matching_entry
from kimi_student.arbiter.verdict import Verdict
from kimi_student.data.world import pool, split_world

MODULES = (
    "auth",
    "billing",
    "search",
    "storage",
    "payments",
    "metrics",
    "queue",
    "cache",
    "mailer",
    "reports",
    "profile",
    "checkout",
    "inventory",
    "gateway",
    "scheduler",
    "audit",
    "sessions",
    "exports",
    "webhooks",
    "catalog",
    "pricing",
    "ledger",
    "geo",
    "notify",
    "uploads",
    "tenants",
    "flags",
    "imports",
    "quota",
    "invoices",
    "shipping",
    "ratings",
    "consent",
    "backup",
    "routing",
    "pipelines",
)
FILE_WORDS = (
    "handler",
    "models",
    "client",
    "views",
    "retry",
    "limits",
    "config",
    "service",
    "store",
    "utils",
    "parser",
    "schema",
    "worker",
    "api",
    "errors",
    "events",
    "render",
    "jobs",
    "rules",
    "adapter",
    "mapper",
    "tokens",
    "filters",
    "export",
    "loader",
    "policy",
    "signals",
    "window",
    "cursor",
    "batch",
)
IDENTS = (
    "user_id",
    "account",
    "token",
    "limit",
    "window",
    "attempts",
    "total",
    "price",
    "items",
    "cursor",
    "offset",
    "deadline",
    "payload",
    "status",
    "region",
    "currency",
    "batch",
    "retries",
    "timeout",
    "key",
    "owner",
    "quota",
    "locale",
    "digest",
    "version",
    "counter",
)
# (source root, test root, extension) per language
LANGS = {
    "py": ("src", "tests", "py"),
    "ts": ("web/src", "web/test", "ts"),
    "go": ("internal", "internal", "go"),
}
APPROVERS = ("ana", "bo", "chen", "dara", "eli", "fumi", "gus", "hana", "ivo", "jun", "kai", "lena")
REASONS = (
    "emergency_hotfix",
    "legacy_integration",
    "experimental_feature",
    "third_party_constraint",
    "performance_critical",
    "security_patch",
    "infrastructure_limitation",
    "architectural_refactor",
    "other",
)
VERBS = (
    "Add",
    "Handle",
    "Cache",
    "Validate",
    "Retry",
    "Limit",
    "Log",
    "Expose",
    "Split",
    "Batch",
    "Index",
    "Clamp",
    "Paginate",
    "Debounce",
    "Encrypt",
    "Normalise",
    "Track",
    "Migrate",
    "Throttle",
    "Deduplicate",
)
OBJECTS = (
    "expired tokens",
    "duplicate events",
    "large payloads",
    "slow queries",
    "empty carts",
    "stale sessions",
    "failed webhooks",
    "missing locales",
    "rate limits",
    "partial refunds",
    "long exports",
    "retry storms",
    "orphaned uploads",
    "clock skew",
    "currency rounding",
    "cold caches",
    "late messages",
    "schema drift",
    "null regions",
    "oversized batches",
    "flaky connections",
    "unicode names",
)
WHYS = (
    "so that support stops seeing timeouts",
    "because the nightly job ran out of memory",
    "as agreed in the incident review",
    "to keep the public API stable",
    "so retries stop doubling load",
    "because customers reported wrong totals",
    "to unblock the mobile release",
    "as the audit asked",
    "so the dashboard loads in under a second",
    "because the old path dropped events",
    "to match the provider's new contract",
    "so on-call gets one alert instead of ten",
    "because the test suite was flaky there",
    "to cut the cloud bill",
)
SHORT = ("fix", "wip", "update", "misc", "changes", "tweak stuff", "fix bug", "more fixes")
# FAIL is the only status PROVENANCE and WAIVER_VALIDITY appear in: they are drawn more often there, so that
# every clause is violated in >= 15% of cases (measured: `kimi-student judge data` prints the shares)
FAIL_WEIGHTS = {
    "BUDGET_ADHERENCE": 1.0,
    "SCOPE_BOUNDARY": 1.0,
    "GATE_INTEGRITY": 1.2,
    "PROVENANCE": 2.2,
    "WAIVER_VALIDITY": 2.2,
}
WAIVABLE = ("BUDGET_ADHERENCE", "SCOPE_BOUNDARY", "GATE_INTEGRITY")
SPARE_WAIVER = 0.6  # the share of candidates carrying a valid waiver no finding needs
STATUS_RANK = {"FAIL": 0, "WAIVER_REQUIRED": 1, "PASS": 2}


@dataclass
class Context:
    """What the candidates of one case share: the repository's spec and policy, and the time of the check."""

    split: str
    module: str
    lang: str
    spec: dict[str, Any]
    policy: dict[str, Any]
    now: str
    files_pool: tuple[str, ...]
    modules: tuple[str, ...]  # the split's module names: other modules' paths are out of this spec's scope

    @property
    def tier(self) -> dict[str, Any]:
        return self.policy["risk_tiers"][str(self.spec["risk_tier"])]


@dataclass
class Candidate:
    """One change offered for review."""

    diff: str
    rationale: str
    commit_sha: str
    evidence: dict[str, Any] | None
    waivers: list[dict[str, Any]] = field(default_factory=list)
    aim: str = ""  # the status the draw aimed at (not the label: the oracle's verdict is)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha(r: random.Random) -> str:
    return "".join(r.choice("0123456789abcdef") for _ in range(40))


def draw_context(r: random.Random, split: str) -> Context:
    with split_world(split):
        modules, words = pool(MODULES), pool(FILE_WORDS)
    module, other = r.sample(modules, 2)
    lang = r.choice(sorted(LANGS))
    src, tests, _ = LANGS[lang]
    spec_in = [f"{src}/{module}", f"{tests}/{module}"] if src != tests else [f"{src}/{module}"]
    if r.random() < 0.3:
        spec_in[0] = f"{src}/{module}/**/*.{LANGS[lang][2]}"
    if r.random() < 0.3:  # helper scripts are this spec's business too
        spec_in.append("scripts")
    spec_out = [f"{src}/{module}/legacy"] if r.random() < 0.5 else [f"{src}/{other}"]
    tier = r.choice((1, 2, 3))
    n_criteria = r.randint(0, 3)
    spec = {
        "id": f"{module.upper()}-{r.randint(1, 999)}",
        "title": f"{r.choice(VERBS).lower()} {r.choice(OBJECTS)}",
        "risk_tier": tier,
        "scope": {"in": spec_in, "out": spec_out, "support": ["docs"]},
        "acceptance": [
            {"id": f"A{i + 1}", "given": "a request", "when": r.choice(OBJECTS), "then": "it is handled"}
            for i in range(n_criteria)
        ],
    }
    # budgets of this repository: tighter for tier 1; the spec's tier is what counts
    files = sorted(r.sample(range(2, 16), 3))  # a stat of <= 19 files keeps a case within 1,024 tokens
    locs = sorted(r.sample(range(10, 160, 5), 3))
    floors = sorted((round(r.uniform(0.6, 0.95), 2) for _ in range(3)), reverse=True)
    policy = {
        "version": 1,
        "risk_tiers": {
            str(t + 1): {"max_files": files[t], "max_loc": locs[t], "coverage_min": floors[t]}
            for t in range(3)
        },
        "gates": {
            "budget_limit": {"mode": "block"},
            "scope_boundary": {"mode": "block"},
            "coverage_threshold": {"mode": "block"},
            "spec_completeness": {"mode": "block"},
        },
        "waivers": {"min_approvers_for_budget_raise": r.choice((1, 2, 2, 3))},
        "edit_rules": {"policy_and_code_same_pr": False},
        "governed_paths": [".caws"],
        "required_evidence": ["tests", "lint", "coverage"],
        "min_rationale_words": r.choice((0, 3, 5, 5, 8)),  # 0: a one-word message is fine here
    }
    if r.random() < 0.12:  # a gate only warns here: its breach is no violation
        policy["gates"][r.choice(sorted(policy["gates"]))]["mode"] = "warn"
    now = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(
        days=r.randint(0, 700), hours=r.randint(0, 23)
    )
    return Context(split, module, lang, spec, policy, _iso(now), tuple(words), tuple(modules))


def _code_line(r: random.Random, lang: str) -> str:
    a, b = r.sample(IDENTS, 2)
    n = r.randint(0, 999)
    if lang == "py":
        return r.choice(
            (
                f"    {a} = {b} + {n}",
                f"    if {a} > {n}:",
                f"        return {b}",
                f"    {a}.append({b})",
                f"def {a}_{b}({a}, {b}={n}):",
                f'    raise ValueError("{a} {b}")',
            )
        )
    if lang == "ts":
        return r.choice(
            (
                f"  const {a} = {b} + {n};",
                f"  if ({a} > {n}) {{",
                f"    return {b};",
                "  }",
                f"export function {a}({b}: number) {{",
                f"  {a}.push({b});",
            )
        )
    return r.choice(
        (
            f"\t{a} := {b} + {n}",
            f"\tif {a} > {n} {{",
            f"\t\treturn {b}",
            "\t}",
            f"func {a}({b} int) error {{",
            f"\t{a} = append({a}, {b})",
        )
    )


def _file_diff(r: random.Random, path: str, status: str, added: int, removed: int, lang: str) -> str:
    head = f"diff --git a/{path} b/{path}\n"
    if status == "added":
        head += f"new file mode 100644\nindex 0000000..{_sha(r)[:7]}\n--- /dev/null\n+++ b/{path}\n"
        old_start, ctx = 0, 0
    elif status == "deleted":
        head += f"deleted file mode 100644\nindex {_sha(r)[:7]}..0000000\n--- a/{path}\n+++ /dev/null\n"
        old_start, ctx = 1, 0
    else:
        head += f"index {_sha(r)[:7]}..{_sha(r)[:7]} 100644\n--- a/{path}\n+++ b/{path}\n"
        old_start, ctx = r.randint(1, 400), 2
    old_n, new_n = removed + ctx, added + ctx
    new_start = 0 if status == "deleted" else max(old_start, 1)
    body = [f" {_code_line(r, lang)}" for _ in range(ctx // 2)]
    body += [f"-{_code_line(r, lang)}" for _ in range(removed)] + [
        f"+{_code_line(r, lang)}" for _ in range(added)
    ]
    body += [f" {_code_line(r, lang)}" for _ in range(ctx - ctx // 2)]
    return head + f"@@ -{old_start},{old_n} +{new_start},{new_n} @@\n" + "\n".join(body) + "\n"


def _split_count(r: random.Random, total: int, parts: int) -> list[int]:
    cuts = sorted(r.randint(0, total) for _ in range(parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total])]


def _paths(r: random.Random, ctx: Context, n: int, outside: int, governed: bool) -> list[str]:
    src, tests, ext = LANGS[ctx.lang]
    spec_out = ctx.spec["scope"]["out"][0]
    inside: list[str] = []
    while len(inside) < n - outside - governed:
        w = r.choice(ctx.files_pool)
        test = (
            f"{tests}/{ctx.module}/test_{w}.{ext}" if ext == "py" else f"{tests}/{ctx.module}/{w}_test.{ext}"
        )
        p = r.choice(
            (
                f"{src}/{ctx.module}/{w}.{ext}",
                f"{src}/{ctx.module}/{r.choice(ctx.files_pool)}/{w}.{ext}",
                test,
                f"docs/{ctx.module}/{w}.md",
                f"scripts/{w}.{ext}",
                f"{src}/{ctx.module}/legacy/{w}.{ext}",
            )
        )
        if (
            p not in inside
            and not p.startswith(spec_out + "/")
            and (p.startswith("docs/") or _in_scope(ctx, p))
        ):
            inside.append(p)
    out = []
    for _ in range(outside):
        w = r.choice(ctx.files_pool)
        if r.random() < 0.5:
            out.append(f"{spec_out}/{w}.{ext}")
        elif "scripts" not in ctx.spec["scope"]["in"] and r.random() < 0.3:
            out.append(f"scripts/{w}.{ext}")
        else:  # another module's code, the same kind of path as this module's
            out.append(f"{src}/{r.choice([m for m in ctx.modules if m != ctx.module])}/{w}.{ext}")
    gov = (
        [r.choice((".caws/policy.yaml", ".caws/working-spec.yaml", ".caws/waivers/WV-0001.yaml"))]
        if governed
        else []
    )
    paths = list(dict.fromkeys(inside + out + gov))
    r.shuffle(paths)
    return paths


def _in_scope(ctx: Context, path: str) -> bool:
    s = ctx.spec["scope"]
    return matching_entry(path, s["in"] + s["support"]) is not None and matching_entry(path, s["out"]) is None


def draw_diff(
    r: random.Random,
    ctx: Context,
    over_budget: str,
    outside: int = 0,
    governed: bool = False,
    files: int | None = None,
    edge: bool = False,
) -> str:
    """A diff within the spec's tier budget, or over it (`over_budget`: "files" or "loc"); `files`: exactly
    that many files, whatever the budget (a path drill's). `edge`: at the budget's edge (a count within 3 of
    its maximum, over or under as `over_budget` says, lines added counted exactly) and, with paths `outside`,
    up to half of the change's paths out of scope (a boundary case's, `judge_data.boundary_case`)."""
    tier = ctx.tier
    max_files, max_loc = tier["max_files"], tier["max_loc"]
    if edge:
        n = max_files + r.randint(1, 3) if over_budget == "files" else max(1, max_files - r.randint(0, 2))
        added = max_loc + r.randint(1, 3) if over_budget == "loc" else max(n, max_loc - r.randint(0, 3))
        if over_budget == "files":  # the lines are not what breaks the budget here
            added = r.randint(n, max(n, max_loc))
        if outside:
            outside = max(outside, r.randint(1, max(1, (n - governed) // 2)))
    elif over_budget == "files":
        n = max_files + r.randint(1, 4)
        added = r.randint(n, max(n, int(max_loc * r.uniform(0.3, 1.0))))
    elif over_budget == "loc":
        n = r.randint(1, max(1, max_files))
        added = int(max_loc * r.uniform(1.02, 1.4)) + 1
    else:  # within budget: in its upper half as often as not, so that a long stat says little either
        n = r.randint(max(1, (max_files + 1) // 2) if r.random() < 0.5 else 1, max(1, max_files))
        added = r.randint(n, max(n, int(max_loc * r.uniform(0.4, 1.0))))
    n = max(n, outside + governed + 1)
    if over_budget != "files":
        n = min(n, max_files)
    if files is not None:
        n = max(files, outside + governed + 1)
    # deletions are free (insertions count): a change within budget often deletes more, so that the length of
    # a diff says little about its verdict (the length baseline of judge_data)
    removed = int(added * r.choice((0.0, 0.1, 0.3, 0.6) if over_budget else (0.0, 0.5, 1.0, 2.0, 3.0)))
    paths = _paths(r, ctx, n, outside, governed)
    # at the edge one line or more a file, `added` in all (a file left with none gets one: the count moves)
    adds = (
        [1 + a for a in _split_count(r, max(0, added - len(paths)), len(paths))]
        if edge
        else _split_count(r, added, len(paths))
    )
    dels = _split_count(r, removed, len(paths))
    parts = []
    for p, a, d in zip(paths, adds, dels):
        status = "added" if d == 0 and a > 0 and r.random() < 0.4 else "modified"
        if a == 0 and d == 0:
            a = 1
        parts.append(_file_diff(r, p, status, a, d, ctx.lang))
    return "".join(parts)


def rationale(r: random.Random, split: str) -> str:
    with split_world(split):
        verbs, objects, whys = pool(VERBS), pool(OBJECTS), pool(WHYS)
    s = f"{r.choice(verbs)} {r.choice(objects)} {r.choice(whys)}."
    if r.random() < 0.4:
        s += f" {r.choice(verbs)} {r.choice(objects)} too."
    return s


def _evidence(
    r: random.Random, ctx: Context, sha: str, breach: str = "", edge: bool = False
) -> dict[str, Any] | None:
    """An evidence manifest for commit `sha`, with `breach` if any; `edge`: coverage within 0.03 of the floor."""
    if breach == "evidence_missing":
        return None
    floor = ctx.tier["coverage_min"]
    above, below = (0.03, 0.03) if edge else (0.15, 0.3)  # how far a passing / failing score strays
    items: list[dict[str, Any]] = [
        {
            "kind": "tests",
            "status": "pass",
            "exit_code": 0,
            "command": r.choice(("pytest -q", "go test ./...", "npm test")),
        },
        {"kind": "lint", "status": "pass", "exit_code": 0},
        {"kind": "coverage", "status": "pass", "value": round(r.uniform(floor, min(1.0, floor + above)), 2)},
    ]
    items += [
        {"kind": "acceptance", "status": "pass", "criterion_id": a["id"]} for a in ctx.spec["acceptance"]
    ]
    if breach == "tests_failed":
        items[0].update(status="fail", exit_code=r.choice((1, 2, 5)))
    elif breach == "tests_missing":
        items.pop(0)
    elif breach == "lint_failed":
        items[1].update(status="fail", exit_code=1)
    elif breach == "lint_missing":
        items.pop(1)
    elif breach == "coverage_below_floor":
        items[2]["value"] = round(r.uniform(max(0.0, floor - below), floor - 0.01), 2)
    elif breach == "acceptance_unverified":
        acc = [i for i in items if i["kind"] == "acceptance"]
        if acc:
            acc[r.randrange(len(acc))]["status"] = "fail" if r.random() < 0.5 else "pass"
            if all(i["status"] == "pass" for i in acc):
                items.remove(acc[0])
    r.shuffle(items)
    doc = {"spec_id": ctx.spec["id"], "commit_sha": sha[: r.choice((7, 12, 40))], "items": items}
    if breach == "evidence_other_commit":
        doc["commit_sha"] = _sha(r)[:12]
    elif breach == "evidence_other_spec":
        doc["spec_id"] = f"{ctx.spec['id'].split('-')[0]}-{int(ctx.spec['id'].split('-')[1]) % 998 + 1}"
    return doc


def _waiver(
    r: random.Random, ctx: Context, gate: str, need_files: int = 0, need_loc: int = 0, flaw: str = ""
) -> dict[str, Any]:
    now = datetime.fromisoformat(ctx.now.replace("Z", "+00:00"))
    min_appr = ctx.policy["waivers"]["min_approvers_for_budget_raise"]
    n_appr = r.randint(min_appr, min_appr + 1) if gate == "budget_limit" else r.randint(1, 2)
    w: dict[str, Any] = {
        "id": f"WV-{r.randint(1, 9999):04d}",
        "gates": [gate],
        "reason_code": r.choice(REASONS),
        "expires_at": _iso(now + timedelta(days=r.randint(1, 120), hours=r.randint(0, 23))),
        "approvers": [{"handle": h} for h in r.sample(APPROVERS, n_appr)],
        "status": "active",
    }
    if r.random() < 0.8:
        w["applies_to"] = ctx.spec["id"]
    if gate == "budget_limit":
        w["delta"] = {"max_files": need_files + r.randint(0, 3), "max_loc": need_loc + r.randint(0, 50)}
    if flaw == "expired":
        w["expires_at"] = _iso(now - timedelta(days=r.randint(0, 90), hours=r.randint(1, 23)))
    elif flaw == "revoked":
        w["status"] = r.choice(("revoked", "proposed", "expired"))
    elif flaw == "other_spec":
        w["applies_to"] = f"{r.choice(MODULES).upper()}-{r.randint(1, 999)}"
        if w["applies_to"] == ctx.spec["id"]:
            w["applies_to"] += "0"
    elif flaw == "approvers":
        if min_appr < 2:
            flaw = "expired"
            w["expires_at"] = _iso(now - timedelta(days=r.randint(1, 90)))
        else:
            w["approvers"] = w["approvers"][: r.randint(1, min_appr - 1)]
    elif flaw == "too_small":
        w["delta"] = {
            "max_files": max(0, need_files - r.randint(1, 3)) if need_files else 0,
            "max_loc": max(0, need_loc - r.randint(1, 40)) if need_loc else 0,
        }
    return w


def _flaw(r: random.Random, gate: str) -> str:
    kinds = ["expired", "revoked", "other_spec"] + (["approvers"] if gate == "budget_limit" else [])
    return r.choice(kinds)


def draw_candidate(r: random.Random, ctx: Context, aim: str, edge: bool = False) -> Candidate:
    """A change aimed at status `aim` (PASS, WAIVER_REQUIRED or FAIL) under `ctx`; `edge`: its counts, coverage
    and paths drawn at their rules' boundaries (`draw_diff`, `_evidence`)."""
    sha = _sha(r)
    tier = ctx.tier
    if aim == "PASS":
        clauses: list[str] = []
    elif aim == "WAIVER_REQUIRED":
        clauses = r.sample(WAIVABLE, 1 if r.random() < 0.6 else 2)
    else:
        names = list(FAIL_WEIGHTS)
        first = r.choices(names, [FAIL_WEIGHTS[c] for c in names])[0]
        clauses = [first]
        if r.random() < 0.5:
            rest = [c for c in names if c != first]
            clauses.append(r.choices(rest, [FAIL_WEIGHTS[c] for c in rest])[0])
    waived = aim == "WAIVER_REQUIRED"
    over, outside, governed, breach, prov, short = "", 0, False, "", "", False
    waivers: list[dict[str, Any]] = []
    invalid_for = None  # the gate an invalid waiver is offered for
    if "WAIVER_VALIDITY" in clauses:
        lifted = [c for c in clauses if c in WAIVABLE]
        invalid_for = {
            "BUDGET_ADHERENCE": "budget_limit",
            "SCOPE_BOUNDARY": "scope_boundary",
            "GATE_INTEGRITY": "coverage_threshold",
        }.get(lifted[0] if lifted else "", "")
        if not invalid_for:
            invalid_for = r.choice(
                ("budget_limit", "scope_boundary", "coverage_threshold", "spec_completeness")
            )
    if "BUDGET_ADHERENCE" in clauses:
        over = r.choice(("files", "loc"))
    if "SCOPE_BOUNDARY" in clauses:
        outside = r.randint(1, 2)
    if "GATE_INTEGRITY" in clauses:
        if waived or invalid_for == "coverage_threshold":
            breach = (
                "coverage_below_floor"
                if not ctx.spec["acceptance"] or r.random() < 0.6
                else "acceptance_unverified"
            )
        else:
            breach = r.choice(
                (
                    "tests_failed",
                    "tests_missing",
                    "lint_failed",
                    "lint_missing",
                    "coverage_below_floor",
                    "acceptance_unverified",
                    "governance",
                )
            )
        if breach == "governance":
            governed, breach = True, ""
    if "PROVENANCE" in clauses:
        options = ["evidence_other_commit", "evidence_other_spec"]
        if ctx.policy["min_rationale_words"] > 0:
            options.append("rationale")
        if "GATE_INTEGRITY" not in clauses or governed:
            options.append("evidence_missing")
        prov = r.choice(options)
        short = prov == "rationale"
    diff = draw_diff(r, ctx, over, outside, governed, edge=edge)
    d = parse_diff(diff)
    evidence = _evidence(r, ctx, sha, prov if prov.startswith("evidence") else breach, edge)
    if prov.startswith("evidence") and breach and evidence is not None:
        evidence = _evidence(r, ctx, sha, breach, edge)
        if prov == "evidence_other_commit":
            evidence["commit_sha"] = _sha(r)[:12]
        else:
            evidence["spec_id"] = f"{ctx.spec['id']}0"
    need_files = max(0, d.files_changed - tier["max_files"])
    need_loc = max(0, d.lines_added - tier["max_loc"])
    gates_for = {
        "BUDGET_ADHERENCE": "budget_limit",
        "SCOPE_BOUNDARY": "scope_boundary",
        "GATE_INTEGRITY": "spec_completeness" if breach == "acceptance_unverified" else "coverage_threshold",
    }
    for c in clauses:
        if c not in WAIVABLE:
            continue
        gate = gates_for[c]
        if waived:
            waivers.append(_waiver(r, ctx, gate, need_files, need_loc))
        elif invalid_for == gate or (
            invalid_for and c == "GATE_INTEGRITY" and invalid_for == "coverage_threshold"
        ):
            waivers.append(_waiver(r, ctx, gate, need_files, need_loc, flaw=_flaw(r, gate)))
            invalid_for = None
        elif c == "BUDGET_ADHERENCE" and r.random() < 0.35:
            waivers.append(_waiver(r, ctx, gate, need_files, need_loc, flaw="too_small"))
    if invalid_for:  # an invalid waiver the change carries without needing it
        waivers.append(_waiver(r, ctx, invalid_for, flaw=_flaw(r, invalid_for)))
    # a valid waiver for a gate nothing breaches: carrying one is no violation, and common enough on PASS and
    # FAIL that "a waiver is carried" does not say WAIVER_REQUIRED (at 0.25 a 135M Judge ruled by it: stop 41)
    if r.random() < SPARE_WAIVER:
        spare = [
            g
            for g in ("scope_boundary", "coverage_threshold", "spec_completeness")
            if g not in {gates_for.get(c) for c in clauses}
        ]
        waivers.append(_waiver(r, ctx, r.choice(spare)))
    ids = set()
    for w in waivers:  # distinct ids within a change
        while w["id"] in ids:
            w["id"] = f"WV-{(int(w['id'][3:]) % 9999) + 1:04d}"
        ids.add(w["id"])
    r.shuffle(waivers)
    min_words = ctx.policy["min_rationale_words"]
    if short:
        text = r.choice([t for t in SHORT if len(t.split()) < min_words])
    elif r.random() < 0.3 and [t for t in SHORT if len(t.split()) >= min_words]:  # terse, and enough here
        text = r.choice([t for t in SHORT if len(t.split()) >= min_words])
    else:
        text = rationale(r, ctx.split)
    return Candidate(diff, text, sha, evidence, waivers, aim)


def change_of(ctx: Context, cand: Candidate) -> tuple[Change, datetime]:
    """A candidate as the oracle reads it, and the time of its check."""
    change = Change(
        parse_diff(cand.diff),
        spec_from(ctx.spec),
        policy_from(ctx.policy),
        None if cand.evidence is None else evidence_from(cand.evidence),
        tuple(waiver_from(w) for w in cand.waivers),
        cand.rationale,
        cand.commit_sha,
    )
    return change, datetime.fromisoformat(ctx.now.replace("Z", "+00:00"))


def label(ctx: Context, cand: Candidate) -> Verdict:
    """The rule oracle's verdict: the only source of a case's label."""
    return check(*change_of(ctx, cand))


def winner(a: Verdict, b: Verdict) -> str:
    """Pairwise: the candidate whose status ranks higher (PASS > WAIVER_REQUIRED > FAIL); equal: tie."""
    return status_winner(a.status, b.status)


def status_winner(a: str, b: str) -> str:
    """`winner` of two statuses."""
    ra, rb = STATUS_RANK[a], STATUS_RANK[b]
    return "a" if ra > rb else "b" if rb > ra else "tie"
