"""Speed of `contextual gen | extract | verify` against a base commit, measured in one run on one machine.

The base commit's package is unpacked into a temp folder (`git archive BASE kimi_student`) and both trees
run the real CLI on the same inputs (PYTHONPATH switched, run from a neutral folder), interleaved: each
repeat runs base then new or new then base, alternately, and the figure per stage is the median wall time
of the repeats (the process's CPU time, user + system, beside it: shared machines drift less in it). Every
repeat also checks that both trees wrote the same bytes: dataset, fixtures, extracted dataset, verify
report and output (SOURCE_DATE_EPOCH is fixed). A last row times the scorer's `tokenizer.boundaries`
over the extracted teacher texts, in-process, in each tree.

Byte identity is required against `--bytes-base` (f2e36b4 by default: the last change of what gen writes,
paths in backticks in gold answers; before it the Worker's data repairs, 7d20972 derivable gold calls and
the train/held-out split, 5685342 the `accept` of gold calls), run once
beside, untimed; `--base` is timed, and where it is another commit its bytes differ on purpose (printed,
with why).

    .venv/bin/python bench/data_speed.py [--n 10000] [--repeats 3] [--base 65fa8e7] [--bytes-base f2e36b4]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contextual_scale import base_tree, machine_line  # same folder

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("gen", "extract", "verify")
# The scorer's `tokenizer.boundaries` over every teacher text of the extracted dataset, timed inside one
# process of each tree (the encoding is not timed): CPU seconds of the best of 3 passes.
BOUNDARIES = """
import json, sys, time
from kimi_student.tokenizer import boundaries, load_tokenizer
texts = [json.loads(l)["teacher_text"] for l in list(open(sys.argv[1], encoding="utf-8"))[1:]]
offs = [o for _, o in load_tokenizer(sys.argv[2]).encode_offsets(texts)]
best = None
for _ in range(3):
    t = time.process_time()
    for x, o in zip(texts, offs):
        boundaries(x, o)
    dt = time.process_time() - t
    best = dt if best is None else min(best, dt)
print(best)
"""


def _cli(tree: Path, cwd: Path, *args: str) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, stdout+stderr) of `python -m kimi_student ARGS` with `tree` first on
    the path. cwd is a neutral folder: `-m` puts the working folder first on sys.path."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "SOURCE_DATE_EPOCH": "1767225600"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "kimi_student", *args], cwd=cwd, env=env, capture_output=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode not in (0, 1):
        sys.exit(f"{tree}: {' '.join(args)} failed:\n{r.stderr.decode(errors='replace')}")
    return wall, cpu, (r.stdout + r.stderr).decode(errors="replace") + f"rc={r.returncode}\n"


def pipeline(tree: Path, work: Path, n: int, seed: int, tokenizer: str) -> dict[str, tuple[float, float]]:
    work.mkdir(parents=True)
    out: dict[str, tuple[float, float]] = {}
    *out["gen"], log = _cli(
        tree, work, "contextual", "gen", "--n", str(n), "--seed", str(seed), "--out", "c.jsonl"
    )
    *out["extract"], log2 = _cli(
        tree, work, "contextual", "extract", "--in", "c.jsonl", "--out", "f.jsonl", "--tokenizer", tokenizer
    )
    *out["verify"], log3 = _cli(tree, work, "contextual", "verify", "--in", "f.jsonl", "--report", "v.json")
    (work / "cli.log").write_text(log + log2 + log3)
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-c", BOUNDARIES, "f.jsonl", tokenizer],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode:
        sys.exit(f"{tree}: boundaries timing failed:\n{r.stderr}")
    out["boundaries"] = (float(r.stdout), float(r.stdout))
    return out


def same_tree(a: Path, b: Path) -> list[str]:
    """Files that differ or exist on one side only (recursively)."""
    cmp = filecmp.dircmp(a, b)
    bad = [*cmp.left_only, *cmp.right_only, *cmp.funny_files]
    bad += [f for f in cmp.common_files if not filecmp.cmp(a / f, b / f, shallow=False)]
    for d in cmp.common_dirs:
        bad += [f"{d}/{x}" for x in same_tree(a / d, b / d)]
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base", default="65fa8e7", help="commit to compare against")
    ap.add_argument("--bytes-base", default="f2e36b4", help="commit whose output bytes must be the same")
    ap.add_argument("--tokenizer", default="smollm2")
    a = ap.parse_args()
    print(machine_line("precision: n/a (no model)  "))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        base = base_tree(a.base, d)
        trees = {"base": base, "new": ROOT}
        same_bytes = "base"
        if a.bytes_base != a.base:  # the reference for bytes, run once and not timed
            (d / "bytes").mkdir()
            pipeline(base_tree(a.bytes_base, d / "bytes"), d / "ref", a.n, a.seed, a.tokenizer)
            same_bytes = "ref"
        _cli(ROOT, d, "tokenizer", "fingerprint", a.tokenizer)  # warm the tokenizer cache: in no stage
        times: dict[str, dict[str, list[tuple[float, float]]]] = {
            t: {s: [] for s in (*STAGES, "boundaries")} for t in trees
        }
        for rep in range(a.repeats):
            order = ("base", "new") if rep % 2 == 0 else ("new", "base")
            for name in order:
                for stage, tc in pipeline(trees[name], d / f"{rep}-{name}", a.n, a.seed, a.tokenizer).items():
                    times[name][stage].append(tc)
            ref = d / (f"{rep}-base" if same_bytes == "base" else "ref")
            diff = same_tree(ref, d / f"{rep}-new")
            if diff:
                sys.exit(f"repeat {rep}: {a.bytes_base} and new wrote different bytes: {diff}")
    print(
        f"items: {a.n}  seed: {a.seed}  base: {a.base}  repeats: {a.repeats} (interleaved)  "
        f"outputs: byte-identical to {a.bytes_base}"
    )
    if same_bytes == "ref":
        print(
            f"bytes of {a.base}: different, on purpose (gold calls carry `accept` since 5685342, are derivable "
            f"and drawn from the train split since 7d20972; bytes base {a.bytes_base}): timed only"
        )
    print(
        f"{'stage':<8} {'base s':>8} {'new s':>8} {'ratio':>6}   {'base cpu':>8} {'new cpu':>8} {'ratio':>6}"
    )
    for stage in (*STAGES, "boundaries"):
        bw, bc = (statistics.median(x[i] for x in times["base"][stage]) for i in (0, 1))
        nw, nc = (statistics.median(x[i] for x in times["new"][stage]) for i in (0, 1))
        print(f"{stage:<10} {bw:8.2f} {nw:8.2f} {bw / nw:5.2f}x   {bc:8.2f} {nc:8.2f} {bc / nc:5.2f}x")
    print("boundaries: CPU s of tokenizer.boundaries over every teacher text, in-process (both columns)")


if __name__ == "__main__":
    main()
