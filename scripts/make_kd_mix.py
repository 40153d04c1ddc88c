"""`python -m scripts.make_kd_mix --out data/kd_mix.jsonl --teacher URI`: the original README's spelling
of `kimi-student kd-mix`."""

from kimi_student.cli import app

if __name__ == "__main__":
    import sys

    app(["kd-mix", *sys.argv[1:]], prog_name="make_kd_mix")
