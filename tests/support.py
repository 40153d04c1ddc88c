"""What tests share besides fixtures: the real CLI in a subprocess and JSONL rows on disk."""

from __future__ import annotations

import ast
import functools
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
KS = [sys.executable, "-m", "kimi_student"]


def ks(
    *args: str | Path, env: dict[str, str] | None = None, preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `kimi-student` CLI in a subprocess (`preexec_fn` runs in the child before exec)."""
    return subprocess.run(
        [*KS, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
        preexec_fn=preexec_fn,  # noqa: PLW1509 - callers only set resource limits
    )


def ks_limited(
    max_bytes: int, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`ks` under a file-size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ): a write past `max_bytes` fails
    with EFBIG, as one on a full disk fails with ENOSPC."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return ks(*args, env=env, preexec_fn=limit)


def ks_here(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real `kimi-student` CLI run in this process (Typer's CliRunner): the same parsing, checks,
    one-line errors and exit codes as `ks`, without starting Python and torch again (seconds a call). For
    the many refusals that end before any work; `ks` stays for what needs a process of its own (kills,
    workers, servers) and for one case of each kind of refusal, as the process boundary's proof. An
    exception the CLI did not turn into an exit code is raised here (a traceback is a failure)."""
    from typer.testing import CliRunner

    from kimi_student.cli import app

    _build_the_command_once()
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        r = CliRunner().invoke(app, [str(a) for a in args], prog_name="kimi-student")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return subprocess.CompletedProcess(list(args), r.exit_code, r.stdout, r.stderr)


@functools.cache
def _build_the_command_once() -> None:
    """Typer's CliRunner builds the Click command from the app on every `invoke` (the signatures of ~60
    functions: ~0.1 s, as much as many a refusal takes to run); the suite makes hundreds of in-process calls.
    From the first call on, `kimi-student`'s command is built once per process and reused: Click makes a
    fresh context for every invocation, so no call sees another's state."""
    import typer.testing

    from kimi_student.cli import app

    build = typer.testing._get_command
    command = build(app)
    typer.testing._get_command = lambda a: command if a is app else build(a)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# Reduced toy end-to-end run: fewer items and steps than kimi_student/configs/toy_e2e.yaml, same pipeline; ~30 s on two
# cores. Shared by the toy e2e tests and the runner tests (its student, tokenizer and Core ML package). 80 steps
# score as 200 did (AMD EPYC, fp32: every held-out tool name right, F1 0.5000; 60 steps: 0.4196).
TOY_STEPS = 80
TOY_FAST = ("--items", "4000", "--steps", str(TOY_STEPS), "--shapes", "128", "--seed", "0")


def files_holding(root: Path, secret: str) -> list[Path]:
    """Every file under `root` whose bytes hold `secret` (raw, or JSON-escaped as written by json.dumps)."""
    needles = {secret.encode(), json.dumps(secret)[1:-1].encode()}
    return [p for p in sorted(root.rglob("*")) if p.is_file() and any(n in p.read_bytes() for n in needles)]


def send_json(handler: BaseHTTPRequestHandler, data: bytes, status: int = 200) -> None:
    """Answer a fake server's request with a JSON body (already encoded)."""
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the kill tests) is expected: socketserver would print its traceback
        to sys.stderr, which an in-process CLI run (ks_here) captures as the command's own stderr."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """A fake server on 127.0.0.1 (a free port) in a daemon thread: (server, http://127.0.0.1:PORT)."""
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def serve_json(answer: Callable[[dict, Any], tuple[int, bytes]]) -> tuple[ThreadingHTTPServer, str]:
    """A fake JSON API on 127.0.0.1 (`serve`): each POST's JSON body and headers go to `answer`, whose
    (status, JSON bytes) is the reply."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(n)
            # A client killed mid-request (the kill tests) leaves a short body: nothing to answer, and no
            # traceback into an in-process command's captured stderr (a CI flake, stop 45).
            if not raw or len(raw) < n:
                return
            status, data = answer(json.loads(raw), self.headers)
            send_json(self, data, status)

    return serve(Handler)


def kill_when(
    args: list[str | Path],
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
    timeout: float = 300,
    may_finish: bool = False,
) -> bool:
    """Run the real CLI with `args` and SIGKILL it as soon as `ready()` holds (or at `timeout`). Unless
    `may_finish`, the run must still have been going when it was killed, or the test would prove nothing
    about resuming. Returns whether it was killed."""
    proc = subprocess.Popen(
        [*KS, *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert may_finish or proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return proc.returncode == -signal.SIGKILL


def kill_seeds() -> list[Any]:
    """Seeds of the random-moment kill tests: seed 0 in every run, the others (up to KILL_SEEDS, 4 unless
    set; `make test` sets 1 to keep inside its budget) marked slow, for `make test-slow`."""
    n = int(os.environ.get("KILL_SEEDS", "4"))
    return [0, *(pytest.param(s, marks=pytest.mark.slow) for s in range(1, n))]


def kill_at_random(
    args: list[str | Path],
    seed: int,
    took: float,
    env: dict[str, str] | None = None,
    started: Callable[[], bool] | None = None,
) -> bool:
    """Run the real CLI and SIGKILL it at a moment drawn from `seed`, between start-up and just past the
    end of an uninterrupted run (which took `took` seconds): loading, working, writing or renaming. With
    `started`, the moment counts from when it first holds (the run's first file: `took` was then timed in
    process, from that file, by `took_from`, and leaves out a process's start-up). False when it finished
    first."""
    delay = random.Random(seed).uniform(0.1, 1.05) * took
    start = [None if started else time.monotonic()]

    def due() -> bool:
        if start[0] is None:
            if not started():  # type: ignore[misc]
                return False
            start[0] = time.monotonic()
        return time.monotonic() - start[0] >= delay

    # `started`: the process's start-up comes before the window, and `took` does not hold it
    timeout = took * 3 + (120 if started else 0)
    return kill_when(args, due, env, timeout=timeout, may_finish=True)


def took_from(first: Path, run: Callable[[], object]) -> float:
    """Seconds from the moment `first` appears to the end of `run()`, which runs in this process (a watcher
    thread looks every 5 ms): the part of a run that a kill can interrupt."""
    seen: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not first.exists():
            time.sleep(0.005)
        seen.append(time.monotonic())

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        run()
    finally:
        done.set()
        w.join()
    assert first.exists(), f"{first} was never written"
    return time.monotonic() - seen[0]


def temp_litter(root: Path) -> list[str]:
    """Temp files and folders under `root` that a finished run should not leave: `*.tmp` (atomic writes,
    staging folders, checkpoints in the making) and `.*.old` (a dataset's fixtures set aside)."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.endswith(".tmp") or p.name.endswith(".old")
    )


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped): what a killed writer's pid looks like."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def crash_scoring_after(monkeypatch: Any, n: int) -> None:
    """Make the eval workers' scorer raise after `n` items: a runner that dies mid-run (in-process)."""
    from kimi_student.eval import workers as eval_workers

    real, seen = eval_workers.score_item, [0]

    def flaky(*a: Any, **kw: Any) -> Any:
        seen[0] += 1
        if seen[0] > n:
            raise RuntimeError("runner crashed")
        return real(*a, **kw)

    monkeypatch.setattr(eval_workers, "score_item", flaky)


def killed_at_rename(step: int, run: Callable[[], None]) -> bool:
    """`run()` in a child process that dies (os._exit, as under SIGKILL: no cleanup) at its `step`-th
    rename or removal; True when it got that far."""
    pid = os.fork()
    if pid == 0:  # the child
        calls = [0]

        def dying(real):  # noqa: ANN001, ANN202
            def f(*a, **kw):  # noqa: ANN002, ANN003, ANN202
                calls[0] += 1
                if calls[0] == step:
                    os._exit(9)
                return real(*a, **kw)

            return f

        os.rename, os.replace = dying(os.rename), dying(os.replace)
        os.unlink, os.rmdir = dying(os.unlink), dying(os.rmdir)
        run()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 9


def defined_tests(path: Path) -> set[str]:
    """`name` of every module-level test function and `Class::name` of every test method of a test file,
    read from its source (nothing imported or collected)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out.add(node.name)
        elif isinstance(node, ast.ClassDef):
            out |= {f"{node.name}::{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)}
    return out
