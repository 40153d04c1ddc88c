"""Errors of the export stage. Each names what failed (an op, a file), so the CLI's one line is enough."""

from __future__ import annotations

from kimi_student.errors import KimiStudentError


class ExportError(KimiStudentError):
    """An export that cannot be produced or checked."""


class UnsupportedOpError(ExportError):
    """The program holds ops the converter has no translation for."""

    def __init__(self, target: str, ops: dict[str, list[str]]):
        self.ops = ops  # op kind -> the graph nodes that use it
        listed = "; ".join(
            f"{k} (nodes: {', '.join(v[:3])}{', ...' if len(v) > 3 else ''})" for k, v in ops.items()
        )
        super().__init__(f"{target} does not support op(s): {listed}")


class CorruptArtifactError(ExportError):
    """A saved artifact (.pt2, .mlpackage, .onnx) that is missing, unreadable or differs from its manifest."""

    def __init__(self, path: object, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")
