"""A change read from a git repository: its diff, its commit messages (the rationale) and its commit.

`REV` is one commit (diffed against its first parent, or the empty tree for a root commit, so a merge is
one ordinary diff) or a range `BASE..HEAD` (the diff between the two, every message in between). Git is
run with no pager, colour, external diff or textconv, and with rename detection, so the text is what
`arbiter.diff.parse_diff` reads whatever the user's git config says.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kimi_student.errors import KimiStudentError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True)
class GitChange:
    diff: str
    rationale: str
    commit_sha: str


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "-c", "core.quotepath=on", *args],
            capture_output=True,
            check=False,
            env={**os.environ, "GIT_PAGER": "cat", "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise KimiStudentError("git is not installed (needed for --git)") from None
    if done.returncode != 0:
        raise KimiStudentError(
            f"git {' '.join(args[:2])} in {repo}: {done.stderr.decode(errors='replace').strip()}"
        )
    return done.stdout.decode("utf-8", errors="surrogateescape")


def read_change(repo: str | Path, rev: str) -> GitChange:
    repo = Path(repo)
    if ".." in rev:
        base, _, head = rev.partition("...") if "..." in rev else rev.partition("..")
        base_sha = _git(repo, "rev-parse", "--verify", f"{base or 'HEAD'}^{{commit}}").strip()
        head_sha = _git(repo, "rev-parse", "--verify", f"{head or 'HEAD'}^{{commit}}").strip()
        if "..." in rev:
            base_sha = _git(repo, "merge-base", base_sha, head_sha).strip()
        messages = _git(repo, "log", "--format=%B", f"{base_sha}..{head_sha}")
    else:
        head_sha = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}").strip()
        parents = _git(repo, "rev-list", "--parents", "-n", "1", head_sha).split()[1:]
        base_sha = parents[0] if parents else EMPTY_TREE
        messages = _git(repo, "log", "-1", "--format=%B", head_sha)
    diff = _git(
        repo,
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "-M",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        base_sha,
        head_sha,
    )
    return GitChange(diff, messages.strip(), head_sha)
