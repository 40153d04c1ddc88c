"""Errors of the export stage, the numpy MIL executor's included. Each names what failed (an op, a
file), so the CLI's one line is enough."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kimi_student.errors import KimiStudentError


class ExportError(KimiStudentError):
    """An export that cannot be produced or checked."""


class UnsupportedOpError(ExportError):
    """A program holds op kinds (or dtypes, value kinds) that a stage cannot translate or run.

    One class for the converter and the numpy executor, so callers catch one name whichever refused."""

    def __init__(self, message: str, ops: dict[str, list[str]]):
        self.ops = ops  # op kind -> the graph nodes that use it (empty lists where the stage names none)
        self.op_types = sorted(ops)
        super().__init__(message)

    @classmethod
    def in_converter(cls, target: str, ops: dict[str, list[str]]) -> UnsupportedOpError:
        """`target` (a converter and its version) has no translation for the op kinds in `ops`."""
        listed = "; ".join(
            f"{k} (nodes: {', '.join(v[:3])}{', ...' if len(v) > 3 else ''})" for k, v in ops.items()
        )
        return cls(f"{target} does not support op(s): {listed}", ops)

    @classmethod
    def in_executor(cls, kinds: Iterable[str], where: str, what: str = "op type(s)") -> UnsupportedOpError:
        """The numpy executor implements none of `kinds`: op types, or the dtypes / value kinds `what` says."""
        ops: dict[str, list[str]] = {k: [] for k in sorted(set(kinds))}
        names = ", ".join(repr(t) for t in ops)
        return cls(
            f"{where}: unsupported MIL {what} {names}; the numpy executor cannot run this program", ops
        )


class CorruptArtifactError(ExportError):
    """A saved artifact (.pt2, .mlpackage, .onnx) that is missing, unreadable or differs from its manifest."""

    def __init__(self, path: object, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class MilExecError(ExportError):
    """The ML program cannot be run: bad inputs, or a value the program itself declares wrongly."""


class CorruptPackageError(MilExecError, CorruptArtifactError):
    """A package file the executor reads is missing, truncated or malformed. ``path`` names the file."""

    def __init__(self, path: str | Path, message: str):
        super().__init__(path, message)
        self.path = Path(path)
