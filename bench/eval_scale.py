"""Evaluation at scale, through the real CLI: items/s of `eval --workers 1` against `--workers 2` on the
same 10k items, measured in one run (target: 2 workers >= 1.8x one), and the time of a 10k
`verification_only` eval with the same workers (target <= 5 s on 2 cores, issue 11 section 5).

The predictions runner scores a file holding each item's gold teacher text (written here), so the work
is the scorer's and the numbers say how well it splits across processes. Each figure is the whole
command, start-up of the worker processes included, as wall time and as the CPU time of the command and
its workers (other work on a shared machine stretches the wall time, much less the CPU time). Where the
seconds go: each stage of the run (`KIMI_STUDENT_STAGES=1`: the parent's and every worker's), start-up
(Python and imports, up to the first stage) and exit (after the last).

With `--base COMMIT` the same commands also run on that commit's package, interleaved with this tree's,
and every figure is shown beside it with the ratio; both trees run from copies outside git, so their
code_version (in every seal and report) is the same and their outputs must be byte-identical.

    .venv/bin/python bench/eval_scale.py [--n 10000] [--workers 2] [--base main]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contextual_scale import ROOT, base_tree, cpu_name, run  # same folder: the generation and CLI helpers

STAGE = re.compile(r"stage (\S+) (.+?) wall ([\d.]+) cpu ([\d.]+) at ([\d.]+)")


def _burn(n: int = 20_000_000) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def cpu_parallelism(workers: int) -> float:
    """How much faster `workers` processes run a pure-Python loop than one process running it as many
    times: the most any split of the work can gain on this machine right now (shared CPUs give less)."""
    t = time.perf_counter()
    for _ in range(workers):
        _burn()
    serial = time.perf_counter() - t
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_burn) for _ in range(workers)]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return serial / (time.perf_counter() - t)


class Timed:
    """One eval command: wall and CPU seconds (its own and its workers'), and its stage lines."""

    def __init__(self, tree: Path, args: list[str]):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree), "KIMI_STUDENT_STAGES": "1"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        r = subprocess.run(
            [sys.executable, "-m", "kimi_student", *args], cwd=ROOT, env=env, capture_output=True
        )
        self.wall = time.time() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if r.returncode not in (0, 1):
            sys.exit(f"{' '.join(args)} failed:\n{r.stderr.decode()}")
        self.stages = [
            (m[1], m[2], float(m[3]), float(m[4]), float(m[5]))
            for m in map(STAGE.fullmatch, r.stderr.decode().splitlines())
            if m
        ]
        main = [s for s in self.stages if s[0] == "main"]
        if main:  # start-up: up to the first stage's start; exit: after the last stage's end
            self.stages.insert(
                0, ("main", "start-up (python, imports, CLI)", main[0][4] - main[0][2] - t0, 0, 0)
            )
            self.stages.append(
                ("main", "exit (parts removed, interpreter)", t0 + self.wall - main[-1][4], 0, 0)
            )


def stage_table(t: Timed) -> list[str]:
    lines = [f"  {'stage':<44} {'wall s':>7} {'cpu s':>7}"]
    for who, name, wall, cpu, _ in t.stages:
        lines.append(f"  {who + ' ' + name:<44} {wall:7.3f}" + (f" {cpu:7.3f}" if cpu else ""))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tokenizer", default="smollm2")
    ap.add_argument("--base", help="a commit to compare with (its package, run on the same inputs)")
    a = ap.parse_args()
    print(
        f"cpu: {cpu_name()}  cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}  python "
        f"{platform.python_version()}  TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}"
    )
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1790000000")  # so both runs can be compared byte for byte
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        gen, final, pred = d / "c.jsonl", d / "final.jsonl", d / "pred.jsonl"
        run("tokenizer", "fingerprint", a.tokenizer)  # warm the tokenizer cache
        run("contextual", "gen", "--n", str(a.n), "--seed", "0", "--out", str(gen))
        run("contextual", "extract", "--in", str(gen), "--out", str(final), "--tokenizer", a.tokenizer)
        with open(final, encoding="utf-8") as fh, open(pred, "w", encoding="utf-8") as out:
            next(fh)  # the header
            for line in fh:
                it = json.loads(line)
                out.write(
                    json.dumps({"id": it["id"], "output": it["teacher_text"]}, ensure_ascii=False) + "\n"
                )
        trees = {"new": d / "new"}
        shutil.copytree(ROOT / "kimi_student", trees["new"] / "kimi_student")  # outside git, as the base
        if a.base:
            (d / "b").mkdir()
            trees["base"] = base_tree(a.base, d / "b")

        def timed(tree: str, runner: list[str], workers: int) -> Timed:
            name = f"{tree}-{'ver' if runner[1] == 'verification_only' else 'pred'}-w{workers}"
            (d / name).mkdir()
            out, rep = d / name / "r.jsonl", d / name / "r.json"
            cmd = ["eval", *runner, "--in", str(final), "--out", str(out), "--report", str(rep)]
            return Timed(trees[tree], [*cmd, "--workers", str(workers)])

        preds = ["--runner", "predictions", "--predictions", str(pred)]
        ver = ["--runner", "verification_only"]
        runs = [(preds, 1), (preds, a.workers), (ver, a.workers)]
        par_before = cpu_parallelism(a.workers)
        got = {(tree, i): timed(tree, *runs[i]) for i in range(len(runs)) for tree in trees}  # interleaved
        par_after = cpu_parallelism(a.workers)
        same = {
            f: (d / "new-pred-w1" / f).read_bytes() == (d / f"new-pred-w{a.workers}" / f).read_bytes()
            for f in ("r.jsonl", "r.json")
        }
        as_base = (
            {
                name: all(
                    (d / f"new-{name}" / f).read_bytes() == (d / f"base-{name}" / f).read_bytes()
                    for f in ("r.jsonl", "r.json")
                )
                for name in ("pred-w1", f"pred-w{a.workers}", f"ver-w{a.workers}")
            }
            if a.base
            else {}
        )
        s = json.loads((d / "new-pred-w1" / "r.json").read_text())["summary"]
    print(f"items: {a.n}  predictions = gold teacher text  (f1_lax {s['integration_f1_lax']})")
    names = [
        "eval predictions --workers 1",
        f"eval predictions --workers {a.workers}",
        f"eval verification_only --workers {a.workers}",
    ]
    head = f"{'':<40} {'wall s':>7} {'cpu s':>7} {'items/s':>8}"
    print(head + (f"   {'base wall':>9} {'base cpu':>8}  {'wall':>6} {'cpu':>6} faster" if a.base else ""))
    for i, name in enumerate(names):
        t = got["new", i]
        line = f"{name:<40} {t.wall:7.2f} {t.cpu:7.2f} {a.n / t.wall:8.0f}"
        if a.base:
            b = got["base", i]
            line += f"   {b.wall:9.2f} {b.cpu:8.2f}  {b.wall / t.wall:5.2f}x {b.cpu / t.cpu:5.2f}x"
        print(line)
    for tree in trees:
        t1, tn = got[tree, 0], got[tree, 1]
        print(
            f"{tree}: speed-up with {a.workers} workers: {t1.wall / tn.wall:.2f}x (target >= 1.8x)  "
            f"(CPU parallelism available, {a.workers} processes of a pure-Python loop: {par_before:.2f}x before, "
            f"{par_after:.2f}x after)"
        )
    print(
        f"byte-identical --workers 1 and {a.workers}: results {same['r.jsonl']}, report {same['r.json']}"
        + ("" if same["r.json"] else " (code_version is in the report: was a commit made during the bench?)")
    )
    if a.base:
        print("byte-identical to base: " + ", ".join(f"{k} {v}" for k, v in as_base.items()))
    t_ver = got["new", 2].wall
    print(
        f"eval verification_only --workers {a.workers}: {t_ver:.2f} s  target <= 5 s: {'OK' if t_ver <= 5 else 'MISSED'}"
    )
    for i, name in ((2, names[2]), (0, names[0])):
        print(f"stages of {name}:")
        print("\n".join(stage_table(got["new", i])))


if __name__ == "__main__":
    main()
