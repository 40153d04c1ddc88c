"""The commands the docs show, and running them as a reader would.

A command is a line of a ```bash block in the README, `docs/*.md` or `eval/HARNESS.md` (continuations joined,
comments and optional `[...]` parts dropped). A doc's commands run in order, with bash, from a workspace that
looks like a fresh checkout (the repo's Makefile, .venv, pyproject.toml and the folders the targets read,
linked; everything a command writes lands in the workspace), each expected to exit 0 unless its line ends
`# exit N`. The README's long runs are listed in tests/unit/test_doc_commands.py with the test that runs them.

    .venv/bin/python -m tests.docs docs/DISTILLATION_GUIDE.md    # run one doc's commands, print each one's time
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "eval").glob("*.md"))]
# What a workspace links from the repo: what the Makefile and the CLI read, never a folder a command writes.
LINKED = [
    "Makefile",
    ".venv",
    "pyproject.toml",
    "bench",
    "tests",
    "eval/tool_broker",
    "reports",
    ".ci",
    ".github",
]
TIMEOUT_S = 300


@dataclass(frozen=True)
class Command:
    doc: str  # path relative to the repo
    line: int  # the doc line the command starts on
    text: str
    exit: int  # the exit status the doc promises (`# exit N` at the end of the line), else 0

    @property
    def key(self) -> str:
        """The command with `.venv/bin/` and extra blanks dropped: how the doc-command tables name it."""
        return " ".join(self.text.removeprefix(".venv/bin/").split())


def commands(doc: Path) -> list[Command]:
    text = doc.read_text(encoding="utf-8")
    out = []
    for m in re.finditer(r"```bash\n(.*?)```", text, re.S):
        first = text.count("\n", 0, m.start(1)) + 1
        joined, start = "", first
        for i, raw in enumerate(m.group(1).splitlines()):
            if not joined:
                start = first + i
            if raw.rstrip().endswith("\\") and " #" not in raw:
                joined += raw.rstrip()[:-1] + " "
                continue
            line, joined = joined + raw, ""
            code, _, comment = line.partition(" #")
            code = re.sub(r"\[[^\]]*\]", "", code).strip()
            if not code or code.startswith("#"):
                continue
            status = re.match(r"\s*exit (\d+)\b", comment)
            out.append(
                Command(str(doc.relative_to(ROOT)), start, code, int(status.group(1)) if status else 0)
            )
    return out


def workspace(where: Path) -> Path:
    """A folder that looks like a fresh checkout to `make` and `kimi-student`: the repo's inputs linked.

    Refused while the repo's .venv is older than pyproject.toml: a doc's `make` line would reinstall from the
    workspace, and `pip install -e .` there points the repo's editable install at a folder that holds no
    kimi_student and is deleted afterwards (every later `kimi-student` then fails to import)."""
    stamp = ROOT / ".venv" / ".installed"
    if not stamp.is_file() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        raise RuntimeError("the repo's .venv is older than pyproject.toml: run `make install` first")
    where.mkdir(parents=True, exist_ok=True)
    for rel in LINKED:
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (where / rel).exists():
            (where / rel).symlink_to(ROOT / rel)
    return where


def run(cmd: Command, ws: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{ws / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "SOURCE_DATE_EPOCH": "1764547200",
    }
    args = ["bash", "-o", "pipefail", "-c", cmd.text]
    # its own process group: a command past the timeout is killed with everything it started (make, the
    # CLI), not left running beside the rest of the suite
    with subprocess.Popen(
        args,
        cwd=ws,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as p:
        try:
            out, err = p.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise
    return subprocess.CompletedProcess(args, p.returncode, out, err)


def failure(cmd: Command, r: subprocess.CompletedProcess[str]) -> str | None:
    if r.returncode == cmd.exit:
        return None
    tail = (r.stdout[-1500:] + r.stderr[-1500:]).strip()
    return f"{cmd.doc}:{cmd.line}: `{cmd.text}` exited {r.returncode}, the doc says {cmd.exit}\n{tail}"


def main(argv: list[str]) -> int:
    import tempfile

    from tests.unit.test_doc_commands import runs_here  # the commands run by other tests are left to them

    bad = 0
    for name in argv:
        with tempfile.TemporaryDirectory(prefix="doc-") as tmp:
            ws = workspace(Path(tmp))
            for cmd in filter(runs_here, commands((ROOT / name).resolve())):
                t = time.perf_counter()
                r = run(cmd, ws)
                why = failure(cmd, r)
                bad += why is not None
                print(
                    f"{time.perf_counter() - t:6.1f} s  exit {r.returncode}  {cmd.doc}:{cmd.line}  {cmd.text}"
                )
                if why:
                    print(why)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
