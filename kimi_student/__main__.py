"""`python -m kimi_student` is the `kimi-student` command."""

from kimi_student.cli import app

app(prog_name="kimi-student")
