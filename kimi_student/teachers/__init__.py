"""Teachers, chosen by URI: `smollm2` (embedded), `hf:<folder|file.gguf>` (in-process), `http(s)://…`
(any OpenAI-compatible /v1/chat/completions)."""

from __future__ import annotations

from kimi_student.teachers.base import Teacher, TeacherReply, TeacherRequest


def make_teacher(uri: str, **opts: object) -> Teacher:
    from kimi_student.errors import KimiStudentError

    if uri.startswith(("http://", "https://")):
        from kimi_student.teachers.openai_http import HTTPTeacher

        return HTTPTeacher(uri, **opts)  # type: ignore[arg-type]
    if uri == "smollm2" or uri.startswith("hf:"):
        from kimi_student.teachers.hf_local import HFTeacher

        return HFTeacher(uri, **{k: v for k, v in opts.items() if k in ("top_k",)})  # type: ignore[arg-type]
    raise KimiStudentError(
        f"unknown teacher {uri!r}: use smollm2, hf:<folder|file.gguf> or http(s)://host[/v1]"
    )


__all__ = ["Teacher", "TeacherReply", "TeacherRequest", "make_teacher"]
