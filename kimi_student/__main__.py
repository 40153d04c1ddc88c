"""`python -m kimi_student` is the `kimi-student` command."""

from kimi_student.cli import app

if __name__ == "__main__":  # not when a spawned eval worker imports the parent's main module
    app(prog_name="kimi-student")
