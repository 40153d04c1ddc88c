"""The command line; `kimi_student.cli:app` is the `kimi-student` entry point."""

from kimi_student.cli.main import app

__all__ = ["app"]
