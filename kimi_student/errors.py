"""Errors that carry where bad input was found, so the CLI can print one precise line."""

from __future__ import annotations

from pathlib import Path


class KimiStudentError(Exception):
    """Base class: a failure the CLI reports in one line (exit code 2)."""


class InputError(KimiStudentError):
    """Bad input: names the file, line and field."""

    def __init__(self, path: str | Path | None, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field, self.message = path, line, field, message
        where = str(path) if path is not None else "<input>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {field or '-'}: {message}")


class ArgumentError(ValueError):
    """Tool arguments that cannot be normalised against the tool's schema."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")
