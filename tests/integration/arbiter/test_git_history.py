"""The arbiter on real git histories: a repository built here with every kind of change git writes (renames
with edits, binaries, quoted and spaced names, mode changes, CRLF, a merge), and this project's own history.
The diff reader must agree with `git diff --numstat` on every commit, and `caws check --git` must rule real
commits with the exit codes it promises."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from kimi_student.arbiter.diff import parse_diff
from kimi_student.arbiter.git import EMPTY_TREE, read_change
from tests.support import ROOT, ks, ks_here

NOW = "2026-12-01T00:00:00Z"


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": "2026-11-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-11-01T00:00:00Z",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, env=env
    ).stdout.decode("utf-8", errors="surrogateescape")


def numstat(repo: Path, base: str, head: str) -> list[tuple[str, int, int]]:
    """What git itself counts per file (binary: 0, 0), by the file's path after the change."""
    raw = git(repo, "diff", "--numstat", "-z", "-M", base, head).split("\0")
    out, i = [], 0
    while i < len(raw) and raw[i]:
        added, removed, path = raw[i].split("\t")
        if path == "":  # a rename: old and new path follow
            path, i = raw[i + 2], i + 3
        else:
            i += 1
        out.append((path, 0 if added == "-" else int(added), 0 if removed == "-" else int(removed)))
    return sorted(out)


def ours(repo: Path, rev: str) -> list[tuple[str, int, int]]:
    d = parse_diff(read_change(repo, rev).diff)
    return sorted((f.path, f.added, f.removed) for f in d.files)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("history")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    (repo / "src/auth").mkdir(parents=True)
    (repo / ".caws").mkdir()
    (repo / ".caws/working-spec.yaml").write_text(
        yaml.safe_dump(
            {
                "id": "AUTH-7",
                "title": "login lockout",
                "risk_tier": 2,
                "scope": {"in": ["src/auth", "tests"], "out": ["src/auth/vendor"], "support": ["notes.md"]},
            }
        )
    )
    login = "".join(f"def f{i}():\n    return {i}\n" for i in range(30))
    (repo / "src/auth/login.py").write_text(login)
    (repo / "notes.md").write_text("--- not a header\n+++ nor this\n")
    shas = [commit(repo, "Initial import of the authentication module and its notes.")]
    # 1: a rename with an edit, a binary, names git must quote, a spaced name, CRLF, no final newline
    git(repo, "mv", "src/auth/login.py", "src/auth/session.py")
    (repo / "src/auth/session.py").write_text(
        login.replace("return 3\n", "return 33\n") + "def extra():\n    pass\n"
    )
    (repo / "src/auth/logo.png").write_bytes(bytes(range(256)) * 4)
    (repo / "src/auth/café menu.txt").write_text("tea\ncoffee")
    (repo / "src/auth/read me.txt").write_text("a\r\nb\r\n")
    (repo / "notes.md").write_text("--- not a header\n+++ nor this\n-- gone\n")
    shas.append(commit(repo, "Rename login to session and add assets with awkward names."))
    # 2: a mode change, a deletion, a change to the binary, a file of header look-alikes
    os.chmod(repo / "src/auth/session.py", 0o755)
    (repo / "src/auth/café menu.txt").unlink()
    (repo / "src/auth/logo.png").write_bytes(bytes(range(255, -1, -1)) * 4)
    (repo / "src/auth/tricky.diff").write_text("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    shas.append(commit(repo, "Make the session script executable and drop the menu file."))
    # 3 and 4 on a branch, merged as 5
    git(repo, "checkout", "-q", "-b", "side")
    (repo / "tests").mkdir()
    (repo / "tests/test_session.py").write_text("def test_a():\n    assert True\n")
    shas.append(commit(repo, "Add a first test of the session module on a side branch."))
    git(repo, "checkout", "-q", "main")
    (repo / "src/auth/session.py").write_text((repo / "src/auth/session.py").read_text() + "X = 1\n")
    shas.append(commit(repo, "Add a module constant to the session module on main."))
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge the side branch with its first test.", "side")
    shas.append(git(repo, "rev-parse", "HEAD").strip())
    # 6: out of scope and a policy edit in one change
    (repo / "src/auth/vendor").mkdir()
    (repo / "src/auth/vendor/lib.py").write_text("V = 2\n")
    (repo / ".caws/policy.yaml").write_text(
        yaml.safe_dump(
            {
                "risk_tiers": {
                    "1": {"max_files": 10, "max_loc": 250},
                    "2": {"max_files": 100, "max_loc": 10000},
                    "3": {"max_files": 500, "max_loc": 40000},
                }
            }
        )
    )
    shas.append(commit(repo, "Vendor a library and relax the policy in the same change."))
    return repo, shas


def test_every_commit_of_a_built_history_reads_as_git_counts_it(history: tuple[Path, list[str]]) -> None:
    repo, shas = history
    parents = [EMPTY_TREE] + shas[:-1]
    parents[4] = shas[2]  # the main-line commit's parent is 2, not the side branch's 3
    for base, sha in zip(parents, shas):
        first = git(repo, "rev-list", "--parents", "-n", "1", sha).split()[1:2] or [EMPTY_TREE]
        assert ours(repo, sha) == numstat(repo, first[0], sha), sha
        assert first[0] == base
    d = parse_diff(read_change(repo, shas[1]).diff)
    by_path = {f.path: f for f in d.files}
    assert (
        by_path["src/auth/session.py"].status == "renamed"
        and by_path["src/auth/session.py"].old_path == "src/auth/login.py"
    )
    assert by_path["src/auth/logo.png"].binary and by_path["src/auth/café menu.txt"].added == 2
    assert by_path["src/auth/read me.txt"].status == "added"
    # a range: the diff between its ends, every message in it
    r = read_change(repo, f"{shas[0]}..{shas[2]}")
    assert sorted((f.path, f.added, f.removed) for f in parse_diff(r.diff).files) == numstat(
        repo, shas[0], shas[2]
    )
    assert "Rename login" in r.rationale and "executable" in r.rationale and r.commit_sha == shas[2]


def test_this_projects_own_history_reads_as_git_counts_it() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked source archive): the built history above still ran")
    shas = git(ROOT, "rev-list", "--first-parent", "-n", "40", "HEAD").split()
    assert len(shas) >= 2
    total = 0
    for sha in shas:
        parent = git(ROOT, "rev-list", "--parents", "-n", "1", sha).split()[1:2] or [EMPTY_TREE]
        mine = ours(ROOT, sha)
        assert mine == numstat(ROOT, parent[0], sha), sha
        total += sum(a + r for _, a, r in mine)
    assert total > 0


def evidence(repo: Path, sha: str, **over: object) -> Path:
    path = repo.parent / f"evidence-{sha[:7]}.yaml"
    doc = {
        "spec_id": "AUTH-7",
        "commit_sha": sha,
        "items": [
            {"kind": "tests", "status": "pass", "exit_code": 0, "command": "pytest"},
            {"kind": "lint", "status": "pass"},
            {"kind": "coverage", "status": "pass", "value": 0.84},
        ],
    }
    path.write_text(yaml.safe_dump({**doc, **over}))
    return path


def test_caws_check_rules_real_commits(history: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, shas = history
    spec = repo / ".caws/working-spec.yaml"
    base = ("caws", "check", "--spec", spec, "--repo", repo, "--now", NOW)
    # the merge commit: its first-parent diff is the side branch's test, in scope
    r = ks_here(*base, "--git", shas[5], "--evidence", evidence(repo, shas[5]), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    v = json.loads(r.stdout)
    assert v["status"] == "PASS" and v["budget"]["files_changed"] == 1 and v["budget"]["lines_added"] == 2
    # commit 1 adds files at the top level of src/auth: in scope; evidence of another commit is caught
    r = ks_here(*base, "--git", shas[1], "--evidence", evidence(repo, shas[0]), "--json")
    assert r.returncode == 1 and [f["rule"] for f in json.loads(r.stdout)["findings"]] == [
        "evidence_other_commit"
    ]
    # commit 6: vendor path under scope.out and the policy edited with code
    out = tmp_path / "verdict.json"
    r = ks_here(*base, "--git", shas[6], "--evidence", evidence(repo, shas[6]), "--out", out)
    assert r.returncode == 1
    v = json.loads(out.read_text())
    assert v["violated_clauses"] == ["SCOPE_BOUNDARY", "GATE_INTEGRITY"]
    assert {f["rule"] for f in v["findings"]} == {"path_in_scope_out", "governance_edited_with_code"}
    assert v["verdict_id"] in r.stdout and "FAIL" in r.stdout.splitlines()[0]
    # ... waived on scope only: still FAIL (governance edits are not waivable)
    wv = tmp_path / "wv.yaml"
    wv.write_text(
        yaml.safe_dump(
            {
                "id": "WV-0007",
                "gates": ["scope_boundary"],
                "reason_code": "legacy_integration",
                "expires_at": "2027-01-01T00:00:00Z",
                "approvers": [{"handle": "ana"}],
                "status": "active",
                "applies_to": "AUTH-7",
            }
        )
    )
    r = ks_here(*base, "--git", shas[6], "--evidence", evidence(repo, shas[6]), "--waiver", wv, "--json")
    v = json.loads(r.stdout)
    assert (
        r.returncode == 1
        and v["waived_clauses"] == ["SCOPE_BOUNDARY"]
        and v["waivers_applied"] == ["WV-0007"]
    )
    # the same change without the policy file (its diff with the .caws hunk cut out): WAIVER_REQUIRED, exit 3
    diff = read_change(repo, shas[6]).diff
    vendor_only = tmp_path / "vendor.diff"
    vendor_only.write_text(diff[diff.index("diff --git a/src/auth/vendor") :])
    vendor = (
        "--diff",
        vendor_only,
        "--commit",
        shas[6],
        "--evidence",
        evidence(repo, shas[6]),
        "--waiver",
        wv,
    )
    why = ("--rationale", "Vendor the rate limiter library under a waiver.", "--json")
    r = ks_here(*base, *vendor, *why)
    assert r.returncode == 3 and json.loads(r.stdout)["status"] == "WAIVER_REQUIRED"
    # the same waiver a day after it expired
    r = ks_here(*base[:-1], "2027-01-02T00:00:00Z", *vendor, *why)
    v = json.loads(r.stdout)
    assert r.returncode == 1 and v["violated_clauses"] == ["SCOPE_BOUNDARY", "WAIVER_VALIDITY"]


def test_caws_check_refuses_bad_input_in_one_line(history: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, shas = history
    spec = repo / ".caws/working-spec.yaml"
    cut = tmp_path / "cut.diff"
    diff = read_change(repo, shas[1]).diff
    cut.write_text(diff[: diff.index("+def extra")])
    r = ks_here("caws", "check", "--spec", spec, "--diff", cut, "--now", NOW)
    assert r.returncode == 2 and f"{cut}:" in r.stderr and "cut short" in r.stderr
    bad = tmp_path / "spec.yaml"
    bad.write_text("id: AUTH-7\ntitle: x\nrisk_tier: 9\nscope: {in: [src]}\n")
    r = ks_here("caws", "check", "--spec", bad, "--git", shas[1], "--repo", repo, "--now", NOW)
    assert r.returncode == 2 and f"{bad}: risk_tier:" in r.stderr
    r = ks_here("caws", "check", "--spec", spec, "--git", "no-such-rev", "--repo", repo, "--now", NOW)
    assert r.returncode == 2 and "git rev-parse" in r.stderr
    r = ks_here(
        "caws", "check", "--spec", spec, "--git", shas[1], "--repo", repo, "--now", "2026-12-01 10:00"
    )
    assert r.returncode == 2 and "--now" in r.stderr and "time zone" in r.stderr
    out = tmp_path / "never.json"
    r = ks_here("caws", "check", "--spec", spec, "--diff", cut, "--out", out)
    assert r.returncode == 2 and not out.exists()
    # one refusal through a real process: the exit code and the single stderr line survive the boundary
    r = ks("caws", "check", "--spec", bad, "--diff", cut)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
