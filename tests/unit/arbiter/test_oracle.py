"""The CAWS rule oracle as a table: a clean change that passes, then one departure per row, with the status,
the violated and waived clauses and the rules that fired. Plus the scope patterns, the documents' schemas
and the verdict's own rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from kimi_student.arbiter.diff import Diff, FileChange
from kimi_student.arbiter.documents import default_policy, evidence_from, policy_from, spec_from, waiver_from
from kimi_student.arbiter.oracle import Change, check
from kimi_student.arbiter.scope import matching_entry
from kimi_student.arbiter.verdict import verdict_problems
from kimi_student.errors import InputError

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
SHA = "0123456789abcdef0123456789abcdef01234567"

SPEC = {
    "id": "AUTH-12",
    "title": "login rate limit",
    "risk_tier": 1,
    "scope": {"in": ["src/auth", "tests/auth/**/*.py"], "out": ["src/auth/legacy"], "support": ["docs"]},
    "acceptance": [{"id": "A1", "given": "a user", "when": "5 failures", "then": "locked"}],
}
EVIDENCE = {
    "spec_id": "AUTH-12",
    "commit_sha": SHA,
    "items": [
        {"kind": "tests", "status": "pass", "exit_code": 0, "command": "pytest tests/auth"},
        {"kind": "lint", "status": "pass", "exit_code": 0},
        {"kind": "coverage", "status": "pass", "value": 0.93},
        {"kind": "acceptance", "status": "pass", "criterion_id": "A1"},
    ],
}


def waiver(**over: Any) -> dict[str, Any]:
    w = {
        "id": "WV-0001",
        "gates": ["budget_limit"],
        "reason_code": "emergency_hotfix",
        "expires_at": "2026-12-31T00:00:00Z",
        "approvers": [{"handle": "ana"}, {"handle": "bo"}],
        "status": "active",
        "applies_to": "AUTH-12",
        "delta": {"max_files": 5, "max_loc": 100},
    }
    return {k: v for k, v in {**w, **over}.items() if v is not None}  # None: leave the key out


def files(n: int = 2, added: int = 20, prefix: str = "src/auth/m") -> list[FileChange]:
    return [FileChange(f"{prefix}{i}.py", f"{prefix}{i}.py", "modified", added, 3) for i in range(n)]


def change(
    diff: list[FileChange] | None = None,
    evidence: dict | None = EVIDENCE,
    waivers: tuple = (),
    policy: dict | None = None,
    **over: Any,
) -> Change:
    pol = default_policy() if policy is None else policy_from(policy)
    base = Change(
        Diff(tuple(files() if diff is None else diff)),
        spec_from(SPEC),
        pol,
        None if evidence is None else evidence_from(evidence),
        tuple(waiver_from(w) for w in waivers),
        "Lock an account after five failed logins in a row.",
        SHA,
    )
    return replace(base, **over)


def ev(**over: Any) -> dict[str, Any]:
    return {**EVIDENCE, **over}


def items(drop: str = "", **replace_kind: dict) -> dict[str, Any]:
    out = [replace_kind.get(i["kind"], i) for i in EVIDENCE["items"] if i["kind"] != drop]
    return ev(items=out)


POLICY = {
    "risk_tiers": {
        "1": {"max_files": 10, "max_loc": 250, "coverage_min": 0.9},
        "2": {"max_files": 100, "max_loc": 10000},
        "3": {"max_files": 500, "max_loc": 40000},
    },
    "waivers": {"min_approvers_for_budget_raise": 2},
}

# (name, change, status, violated clauses, waived clauses, rules that fired)
TABLE = [
    ("clean", change(), "PASS", (), (), ()),
    ("too many files", change(files(11, 5)), "FAIL", ("BUDGET_ADHERENCE",), (), ("max_files_exceeded",)),
    ("too many lines", change(files(2, 126)), "FAIL", ("BUDGET_ADHERENCE",), (), ("max_loc_exceeded",)),
    ("exactly at budget", change(files(10, 25)), "PASS", (), (), ()),
    (
        "deletions are free",
        change([FileChange("src/auth/old.py", "src/auth/old.py", "deleted", 0, 900)]),
        "PASS",
        (),
        (),
        (),
    ),
    (
        "budget waiver covers",
        change(files(12, 5), waivers=(waiver(),)),
        "WAIVER_REQUIRED",
        ("BUDGET_ADHERENCE",),
        ("BUDGET_ADHERENCE",),
        ("max_files_exceeded",),
    ),
    (
        "budget waiver too small",
        change(files(16, 5), waivers=(waiver(),)),
        "FAIL",
        ("BUDGET_ADHERENCE",),
        (),
        ("max_files_exceeded",),
    ),
    (
        "two waivers add up",
        change(files(16, 5), waivers=(waiver(), waiver(id="WV-0002"))),
        "WAIVER_REQUIRED",
        ("BUDGET_ADHERENCE",),
        ("BUDGET_ADHERENCE",),
        ("max_files_exceeded",),
    ),
    (
        "expired waiver",
        change(files(12, 5), waivers=(waiver(expires_at="2026-11-30T23:59:59Z"),)),
        "FAIL",
        ("BUDGET_ADHERENCE", "WAIVER_VALIDITY"),
        (),
        ("waiver_invalid", "max_files_exceeded"),
    ),
    (
        "one approver for a raise",
        change(files(12, 5), waivers=(waiver(approvers=[{"handle": "ana"}]),)),
        "FAIL",
        ("BUDGET_ADHERENCE", "WAIVER_VALIDITY"),
        (),
        ("waiver_invalid", "max_files_exceeded"),
    ),
    (
        "revoked waiver",
        change(files(12, 5), waivers=(waiver(status="revoked"),)),
        "FAIL",
        ("BUDGET_ADHERENCE", "WAIVER_VALIDITY"),
        (),
        ("waiver_invalid", "max_files_exceeded"),
    ),
    (
        "waiver for another spec",
        change(files(12, 5), waivers=(waiver(applies_to="PAY-3"),)),
        "FAIL",
        ("BUDGET_ADHERENCE", "WAIVER_VALIDITY"),
        (),
        ("waiver_invalid", "max_files_exceeded"),
    ),
    (
        "schema-invalid waiver",
        change(files(12, 5), waivers=(waiver(id="W1"),)),
        "FAIL",
        ("BUDGET_ADHERENCE", "WAIVER_VALIDITY"),
        (),
        ("waiver_invalid", "max_files_exceeded"),
    ),
    ("unneeded valid waiver", change(waivers=(waiver(),)), "PASS", (), (), ()),
    (
        "stale waiver on a clean change",
        change(waivers=(waiver(expires_at="2026-01-01T00:00:00Z"),)),
        "FAIL",
        ("WAIVER_VALIDITY",),
        (),
        ("waiver_invalid",),
    ),
    (
        "scope.out",
        change([FileChange("src/auth/legacy/a.py", "src/auth/legacy/a.py", "modified", 1, 1)]),
        "FAIL",
        ("SCOPE_BOUNDARY",),
        (),
        ("path_in_scope_out",),
    ),
    (
        "outside scope.in",
        change([FileChange("src/billing/a.py", "src/billing/a.py", "modified", 1, 1)]),
        "FAIL",
        ("SCOPE_BOUNDARY",),
        (),
        ("path_outside_scope_in",),
    ),
    (
        "renamed out of scope",
        change([FileChange("src/auth/a.py", "lib/a.py", "renamed", 0, 0)]),
        "FAIL",
        ("SCOPE_BOUNDARY",),
        (),
        ("path_outside_scope_in",),
    ),
    (
        "support and glob",
        change(
            [
                FileChange("docs/x.md", "docs/x.md", "modified", 1, 0),
                FileChange("tests/auth/unit/test_a.py", None, "added", 9, 0),
            ]
        ),
        "PASS",
        (),
        (),
        (),
    ),
    (
        "scope waiver",
        change(
            [FileChange("src/billing/a.py", "src/billing/a.py", "modified", 1, 1)],
            waivers=(waiver(gates=["scope_boundary"], delta=None),),
        ),
        "WAIVER_REQUIRED",
        ("SCOPE_BOUNDARY",),
        ("SCOPE_BOUNDARY",),
        ("path_outside_scope_in",),
    ),
    (
        "tests fail",
        change(evidence=items(tests={"kind": "tests", "status": "fail", "exit_code": 1})),
        "FAIL",
        ("GATE_INTEGRITY",),
        (),
        ("tests_failed",),
    ),
    (
        "tests pass with a bad exit code",
        change(evidence=items(tests={"kind": "tests", "status": "pass", "exit_code": 2})),
        "FAIL",
        ("GATE_INTEGRITY",),
        (),
        ("tests_failed",),
    ),
    ("no lint", change(evidence=items(drop="lint")), "FAIL", ("GATE_INTEGRITY",), (), ("lint_missing",)),
    (
        "coverage under the tier floor",
        change(evidence=items(coverage={"kind": "coverage", "status": "pass", "value": 0.85})),
        "FAIL",
        ("GATE_INTEGRITY",),
        (),
        ("coverage_below_floor",),
    ),
    (
        "coverage waiver",
        change(
            evidence=items(coverage={"kind": "coverage", "status": "pass", "value": 0.85}),
            waivers=(waiver(gates=["coverage_threshold"], delta=None),),
        ),
        "WAIVER_REQUIRED",
        ("GATE_INTEGRITY",),
        ("GATE_INTEGRITY",),
        ("coverage_below_floor",),
    ),
    (
        "unverified acceptance",
        change(evidence=items(drop="acceptance")),
        "FAIL",
        ("GATE_INTEGRITY",),
        (),
        ("acceptance_unverified",),
    ),
    (
        "a tests waiver lifts nothing",
        change(
            evidence=items(tests={"kind": "tests", "status": "fail"}),
            waivers=(waiver(gates=["spec_completeness"], delta=None),),
        ),
        "FAIL",
        ("GATE_INTEGRITY",),
        (),
        ("tests_failed",),
    ),
    (
        "policy edited with code",
        change(files(1) + [FileChange(".caws/policy.yaml", ".caws/policy.yaml", "modified", 1, 1)]),
        "FAIL",
        ("GATE_INTEGRITY",),
        (),
        ("governance_edited_with_code",),
    ),
    (
        "policy edited alone",
        change([FileChange(".caws/policy.yaml", ".caws/policy.yaml", "modified", 1, 1)]),
        "PASS",
        (),
        (),
        (),
    ),
    ("no evidence", change(evidence=None), "FAIL", ("PROVENANCE",), (), ("evidence_missing",)),
    (
        "evidence for another spec",
        change(evidence=ev(spec_id="PAY-3")),
        "FAIL",
        ("PROVENANCE",),
        (),
        ("evidence_other_spec",),
    ),
    (
        "evidence for another commit",
        change(evidence=ev(commit_sha="fedcba9")),
        "FAIL",
        ("PROVENANCE",),
        (),
        ("evidence_other_commit",),
    ),
    ("evidence on a short sha", change(evidence=ev(commit_sha=SHA[:7])), "PASS", (), (), ()),
    (
        "schema-invalid evidence",
        change(evidence=ev(items=EVIDENCE["items"] + [{"kind": "vibes", "status": "pass"}])),
        "FAIL",
        ("PROVENANCE",),
        (),
        ("evidence_invalid",),
    ),
    ("no rationale", change(rationale="fix"), "FAIL", ("PROVENANCE",), (), ("rationale_missing",)),
    ("no diff", change([]), "FAIL", ("PROVENANCE",), (), ("diff_missing",)),
    (
        "budget in warn mode",
        change(files(11, 5), policy={**POLICY, "gates": {"budget_limit": {"mode": "warn"}}}),
        "PASS",
        (),
        (),
        ("max_files_exceeded",),
    ),
    (
        "budget skipped",
        change(files(11, 5), policy={**POLICY, "gates": {"budget_limit": {"enabled": False}}}),
        "PASS",
        (),
        (),
        (),
    ),
    (
        "two clauses, one waived",
        change(
            [FileChange("src/billing/a.py", "src/billing/a.py", "modified", 1, 1)],
            evidence=items(drop="lint"),
            waivers=(waiver(gates=["scope_boundary"], delta=None),),
        ),
        "FAIL",
        ("SCOPE_BOUNDARY", "GATE_INTEGRITY"),
        ("SCOPE_BOUNDARY",),
        ("path_outside_scope_in", "lint_missing"),
    ),
]


@pytest.mark.parametrize("name,c,status,violated,waived,rules", TABLE, ids=[row[0] for row in TABLE])
def test_rule_table(name: str, c: Change, status: str, violated: tuple, waived: tuple, rules: tuple) -> None:
    v = check(c, NOW)
    assert (v.status, v.violated_clauses, v.waived_clauses) == (status, violated, waived), v.rationale
    assert tuple(f.rule for f in v.findings) == rules
    body = v.to_json()
    assert verdict_problems(body) == ()
    assert body["rationale"].startswith(status)
    for clause in violated:
        assert clause in body["rationale"]
    # a waiver is applied exactly when it lifts a clause (in a FAIL too: the verdict names what it lifted)
    assert bool(body["waivers_applied"]) == bool(waived)
    assert all(w.startswith("WV-") for w in body["waivers_applied"])


def test_expiry_is_decided_at_check_time() -> None:
    c = change(files(12, 5), waivers=(waiver(expires_at="2026-12-01T12:00:00+01:00"),))  # 11:00 UTC
    assert check(c, datetime(2026, 12, 1, 10, 59, tzinfo=timezone.utc)).status == "WAIVER_REQUIRED"
    assert check(c, datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc)).status == "FAIL"


def test_equal_inputs_give_equal_verdict_ids_and_any_difference_changes_it() -> None:
    a, b = check(change(), NOW).to_json(), check(change(), NOW).to_json()
    assert a == b and a["verdict_id"].startswith("CAWS-VERDICT-")
    assert check(change(files(3)), NOW).to_json()["verdict_id"] != a["verdict_id"]


def test_budget_figures_in_the_verdict() -> None:
    b = check(change(files(12, 5), waivers=(waiver(),)), NOW).to_json()["budget"]
    assert b == {"files_changed": 12, "lines_added": 60, "lines_removed": 36, "max_files": 10, "max_loc": 250}


@pytest.mark.parametrize(
    "path,entries,hit",
    [
        ("src/a.py", ["src"], "src"),
        ("srcx/a.py", ["src"], None),
        ("src", ["src/"], "src/"),
        ("./src//a.py", ["src"], "src"),
        ("src/a/b/c.py", ["src/**/*.py"], "src/**/*.py"),
        ("src/c.py", ["src/**/*.py"], "src/**/*.py"),
        ("src/a/c.ts", ["src/**/*.py"], None),
        ("src/a/c.py", ["src/*.py"], None),
        ("src/c.py", ["src/*.py"], "src/*.py"),
        (".github/workflows/ci.yml", [".github/**"], ".github/**"),
        ("a/.env", ["**/.env"], "**/.env"),
        ("lib/x1.c", ["lib/x[0-9].c"], "lib/x[0-9].c"),
        ("lib/xa.c", ["lib/x[!0-9].c"], "lib/x[!0-9].c"),
        ("docs/a.md", ["{docs,notes}/*.md"], "{docs,notes}/*.md"),
        ("x/a.md", ["{docs,notes}/*.md"], None),
        ("a.py", ["?.py"], "?.py"),
        ("ab.py", ["?.py"], None),
        ("a+b.py", ["a+b.py"], "a+b.py"),
    ],
)
def test_scope_patterns(path: str, entries: list[str], hit: str | None) -> None:
    assert matching_entry(path, entries) == hit


def test_the_law_is_checked_as_bad_input() -> None:
    with pytest.raises(InputError) as e:
        spec_from({**SPEC, "risk_tier": 4}, "spec.yaml")
    assert (e.value.path, e.value.field) == ("spec.yaml", "risk_tier")
    with pytest.raises(InputError) as e:
        policy_from({"risk_tiers": {"1": {"max_files": 1}}}, "policy.yaml")
    assert e.value.field == "risk_tiers" and "'2' is a required property" in e.value.message


def test_verdict_rules_beyond_the_schema() -> None:
    ok = {"status": "FAIL", "violated_clauses": ["PROVENANCE"], "rationale": "no evidence"}
    assert verdict_problems(ok) == ()
    assert verdict_problems({**ok, "status": "PASS"}) == ("status: PASS with violated clauses",)
    assert verdict_problems({**ok, "violated_clauses": []}) == ("status: FAIL names no violated clause",)
    assert verdict_problems({**ok, "waived_clauses": ["SCOPE_BOUNDARY"]}) == (
        "waived_clauses: a waived clause that is not violated",
    )
    assert verdict_problems({**ok, "status": "OK"})[0].startswith("status: 'OK' is not one of")
    assert verdict_problems({**ok, "violated_clauses": ["STYLE"]})[0].startswith("violated_clauses.0:")
    assert verdict_problems({**ok, "verdict": "PASS"})[0].startswith("(document): Additional properties")


def test_a_mistyped_waiver_or_evidence_field_reads_as_missing_and_is_reported() -> None:
    """Waivers and evidence are judged, not trusted: a field of the wrong type (a bool where a count or a
    value belongs, a string for a list) reads as absent, and the schema problem is kept as a finding."""
    w = waiver_from(
        {"id": "WV-0001", "gates": "budget_limit", "status": "active", "expires_at": "2027-01-01T00:00:00Z",
         "approvers": [{"handle": "ana"}, "bob"], "delta": {"max_files": True, "max_loc": 20}}
    )  # fmt: skip
    assert (w.gates, w.approvers, w.delta_files, w.delta_loc, w.has_delta) == ((), ("ana",), 0, 20, True)
    assert w.problems
    e = evidence_from(
        {"spec_id": 7, "commit_sha": "abc", "items": [
            {"kind": "tests", "status": "pass", "exit_code": True},
            {"kind": "coverage", "status": "pass", "value": False},
            {"kind": "coverage", "status": "pass", "value": 0.9},
            {"status": "pass"},
        ]}
    )  # fmt: skip
    assert e.spec_id is None and e.commit_sha == "abc" and len(e.items) == 3
    assert e.items[0].exit_code is None and e.items[1].value is None and e.items[2].value == 0.9
    assert e.problems
