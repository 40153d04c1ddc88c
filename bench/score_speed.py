"""Speed of the scorer against a base commit, measured in one run on one machine: in-process items/s of the
scoring loop, and the wall time of `eval --runner verification_only` through the real CLI.

N gold items are generated and extracted once (this tree's CLI). The base commit's package is unpacked
into a temp folder (`git archive BASE kimi_student`) and each tree is imported in its own subprocess
(PYTHONPATH switched, run from a neutral folder), interleaved: each repeat runs base then new or new then
base, alternately; the figure is the median of the repeats. The loop is what eval/workers.py does per
chunk: the runner's outputs, `encode_offsets` of all of them (tokenization is timed), `result_row` (so
`score_item` with the real tokenizer and ToolBroker) and `dumps_line` of each row; it runs once per
process, cold, as an eval does. Every repeat checks that both trees wrote the same result bytes (the
eval's results JSONL, and the loop's rows) and the same report but for code_version.

    .venv/bin/python bench/score_speed.py [--n 2000] [--repeats 3] [--base 2ff5711]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contextual_scale import base_tree, machine_line  # same folder

ROOT = Path(__file__).resolve().parents[1]
# The scoring loop, in-process: prints items/s and the sha256 of the rows it wrote.
LOOP = """
import hashlib, sys, time
from pathlib import Path
from kimi_student.data.dataset import dataset_fixture_dirs, read_dataset
from kimi_student.eval.runners.gold import VerificationOnly
from kimi_student.eval.score.item import scrub_surrogates
from kimi_student.eval.workers import result_row
from kimi_student.jsonl import dumps_line
from kimi_student.tokenizer import load_tokenizer
from kimi_student.tools.broker import ToolBroker
ds = Path(sys.argv[1])
header, items = read_dataset(ds)
items = list(items)
broker = ToolBroker.from_folders(dataset_fixture_dirs(ds, header))
tok = load_tokenizer(sys.argv[2])
runner = VerificationOnly("bench")
t = time.perf_counter()
outs = list(runner.outputs(items))
encs = tok.encode_offsets([scrub_surrogates(o.text)[0] for o in outs])
rows = "".join(dumps_line(result_row(*a, tok, broker)) for a in zip(items, outs, encs))
dt = time.perf_counter() - t
print(len(items) / dt, hashlib.sha256(rows.encode()).hexdigest())
"""


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "SOURCE_DATE_EPOCH": "1767225600"}


def _py(tree: Path, cwd: Path, *args: str) -> tuple[float, str]:
    """(wall s, stdout) of `python ARGS` with `tree` first on the path, from the neutral folder `cwd`."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *args], cwd=cwd, env=_env(tree), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode not in (0, 1):
        sys.exit(f"{tree}: {' '.join(args[:4])} failed:\n{r.stderr}")
    return wall, r.stdout


def loop_speed(tree: Path, cwd: Path, dataset: Path, tokenizer: str) -> tuple[float, str]:
    """(items/s, sha256 of the rows) of the in-process scoring loop in `tree`."""
    out = _py(tree, cwd, "-c", LOOP, str(dataset), tokenizer)[1].split()
    return float(out[0]), out[1]


def eval_time(
    tree: Path, cwd: Path, dataset: Path, tokenizer: str, workers: int
) -> tuple[float, bytes, dict]:
    """(wall s, results bytes, report without code_version) of `eval --runner verification_only`."""
    for f in ("r.jsonl", "r.json"):
        (cwd / f).unlink(missing_ok=True)
    wall, _ = _py(
        tree,
        cwd,
        *("-m", "kimi_student", "eval", "--runner", "verification_only", "--in", str(dataset)),
        *("--out", "r.jsonl", "--report", "r.json", "--tokenizer", tokenizer, "--workers", str(workers)),
    )
    report = json.loads((cwd / "r.json").read_text())
    for part in (report, report.get("header", {})):
        part.pop("code_version", None)
    return wall, (cwd / "r.jsonl").read_bytes(), report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base", default="2ff5711", help="commit to compare against")
    ap.add_argument("--tokenizer", default="smollm2")
    ap.add_argument("--workers", type=int, default=1, help="--workers of the eval runs")
    a = ap.parse_args()
    print(machine_line(""))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        base = base_tree(a.base, d)
        trees = {"base": base, "new": ROOT}
        data = d / "data"
        data.mkdir()
        cli = ("-m", "kimi_student", "contextual")
        _py(ROOT, data, *cli, "gen", "--n", str(a.n), "--seed", str(a.seed), "--out", "c.jsonl")
        _py(ROOT, data, *cli, "extract", "--in", "c.jsonl", "--out", "f.jsonl", "--tokenizer", a.tokenizer)
        dataset = data / "f.jsonl"
        speed: dict[str, list[float]] = {t: [] for t in trees}
        wall: dict[str, list[float]] = {t: [] for t in trees}
        for rep in range(a.repeats):
            order = ("base", "new") if rep % 2 == 0 else ("new", "base")
            seen: dict[str, tuple[str, bytes, dict]] = {}
            for name in order:
                work = d / f"{rep}-{name}"
                work.mkdir()
                ips, rows = loop_speed(trees[name], work, dataset, a.tokenizer)
                w, results, report = eval_time(trees[name], work, dataset, a.tokenizer, a.workers)
                speed[name].append(ips)
                wall[name].append(w)
                seen[name] = (rows, results, report)
            same = [seen["base"][i] == seen["new"][i] for i in range(3)]
            if not all(same):
                sys.exit(f"repeat {rep}: base and new differ (loop rows, results, report): {same}")
    print(
        f"items: {a.n}  seed: {a.seed}  base: {a.base}  repeats: {a.repeats} (interleaved, median)  "
        "loop rows, results JSONL, report (less code_version): byte-identical"
    )
    print(f"{'measure':<36} {'base':>9} {'new':>9} {'ratio':>7}")
    bs, ns = statistics.median(speed["base"]), statistics.median(speed["new"])
    print(f"{'scoring loop, items/s (in-process)':<36} {bs:9.0f} {ns:9.0f} {ns / bs:6.2f}x")
    bw, nw = statistics.median(wall["base"]), statistics.median(wall["new"])
    label = f"eval verification_only -w{a.workers}, s"
    print(f"{label:<36} {bw:9.2f} {nw:9.2f} {bw / nw:6.2f}x")
    print(f"{'  of which items/s':<36} {a.n / bw:9.0f} {a.n / nw:9.0f}")


if __name__ == "__main__":
    main()
