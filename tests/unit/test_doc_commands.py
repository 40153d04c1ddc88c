"""Every command the docs show still exists as shown: each `make` target (dry run, with the variables given),
and each `kimi-student` subcommand with every option the doc line passes (its `--help` lists them). The docs'
long runs (demo, worker-e2e, benches) are run by their own tests; this catches a renamed target or flag."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support import ROOT, ks_here

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def doc_commands() -> list[tuple[str, str]]:
    """(doc, command line) for each line of each ```bash block, continuations joined, comments and
    optional [..] parts dropped."""
    out = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\[[^\]]*\]", "", line.split(" #")[0]).strip()
                if line and not line.startswith("#"):
                    out.append((doc.name, line))
    return out


COMMANDS = doc_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 30
    assert {c.split()[0] for _, c in COMMANDS} <= {"make", "kimi-student", ".venv/bin/kimi-student"}


@pytest.mark.parametrize(
    ("doc", "cmd"), [c for c in COMMANDS if c[1].startswith("make ")], ids=lambda x: str(x)[:60]
)
def test_a_documented_make_command_names_targets_that_exist(doc: str, cmd: str) -> None:
    r = subprocess.run(["make", "-n", *cmd.split()[1:]], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"{doc}: {cmd}: {r.stderr[-500:]}"


_HELP: dict[str, str] = {}


@pytest.mark.parametrize(
    ("doc", "cmd"), [c for c in COMMANDS if "kimi-student" in c[1].split()[0]], ids=lambda x: str(x)[:60]
)
def test_a_documented_cli_command_exists_with_its_options(doc: str, cmd: str) -> None:
    words = cmd.split()[1:]
    sub = []
    for w in words:  # the subcommand path: the words before the first option or argument that is not one
        if w.startswith("-") or w in ("...",):
            break
        trial = " ".join([*sub, w])
        if trial not in _HELP:
            r = ks_here(*trial.split(), "--help")
            _HELP[trial] = r.stdout if r.returncode == 0 else ""
        if not _HELP[trial]:
            break
        sub.append(w)
    assert sub, f"{doc}: {cmd}: no such subcommand"
    help_text = _HELP[" ".join(sub)]
    for opt in re.findall(r"(?<!\S)(--[a-z][a-z0-9-]*)", cmd):
        assert opt in help_text, f"{doc}: {cmd}: `kimi-student {' '.join(sub)}` has no {opt}"
