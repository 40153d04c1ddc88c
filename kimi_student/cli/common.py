"""What every subcommand shares: one-line errors with exit 2, number formatting, progress bars on a terminal."""

from __future__ import annotations

import sys
from typing import Any

import typer

from kimi_student.errors import KimiStudentError


def fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def cpu_cores() -> int:
    """The CPU cores this process may run on (a taskset's share, not the host's count)."""
    from kimi_student.train.threads import affinity_cores

    return affinity_cores()


def show_progress() -> bool:
    return sys.stderr.isatty()


def guarded(fn: Any) -> Any:
    """Every known failure becomes one line on stderr and exit code 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except KimiStudentError as e:
            fail(str(e))

    return wrapper
