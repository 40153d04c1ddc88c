"""The doc test: each doc's commands run for real, in order, as a reader would run them from a fresh checkout
(tests/docs.py: a workspace with the repo's inputs linked, bash, each command's promised exit status). The
commands a doc shows that are too long for the suite are run by the tests tests/unit/test_doc_commands.py
names for them; everything else runs here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs import DOCS, ROOT, commands, failure, run, workspace
from tests.unit.test_doc_commands import runs_here


@pytest.mark.parametrize("doc", [d for d in DOCS if commands(d)], ids=lambda d: str(d.relative_to(ROOT)))
def test_every_command_of_the_doc_works_as_shown(doc: Path, tmp_path: Path) -> None:
    cmds = [c for c in commands(doc) if runs_here(c)]
    assert cmds, f"{doc.name}: no command of its own runs here"
    ws = workspace(tmp_path / "ws")
    for cmd in cmds:
        why = failure(cmd, run(cmd, ws))
        assert why is None, why
