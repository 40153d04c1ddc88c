"""Speed of the scorer against base commits, measured in one run on one machine: in-process items/s of the
scoring loop, and the wall time of `eval --runner verification_only` through the real CLI.

N gold items are generated and extracted once (this tree's CLI). Each base commit's package is unpacked
into a temp folder (`git archive BASE kimi_student`) and each tree is imported in its own subprocess
(PYTHONPATH switched, run from a neutral folder), interleaved: each repeat runs the trees in a rotated
order; the figure is the median of the repeats. The loop is what eval/workers.py does per chunk: the
runner's outputs, tokenization of all of them (timed: `encode_answers` where the tree has it, else
`encode_offsets`), `result_row` (so `score_item` with the real tokenizer and ToolBroker) and `dumps_line`
of each row; it runs once per process, cold, as an eval does. Per core: every subprocess runs with RAYON_NUM_THREADS=1
and TOKENIZERS_PARALLELISM=false (the tokenizers' Rust thread pool would otherwise encode a batch on the
other cores too), and the loop's figure is given twice: items per wall-clock second, and items per second
of the process's own CPU time (time.process_time, the steadier one where other work shares the cores).

Two bases: `--bytes-base` (874cf81 by default, the last change of the scoring definitions), whose result
bytes every repeat requires equal to this tree's (the eval's results JSONL, the loop's rows, the report
but for code_version); and `--base` (2ff5711 by default), only timed where it is older than a change of
the definitions: its bytes are compared and said to differ on purpose, with `--why`.

    .venv/bin/python bench/score_speed.py [--n 2000] [--repeats 3] [--base 2ff5711] [--bytes-base 874cf81]
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
try:  # the tree's workers tokenize the answers only
    from kimi_student.eval.score.tokens import encode_answers
except ImportError:
    encode_answers = type(tok).encode_offsets
t, cpu = time.perf_counter(), time.process_time()
outs = list(runner.outputs(items))
encs = encode_answers(tok, [scrub_surrogates(o.text)[0] for o in outs])
rows = "".join(dumps_line(result_row(*a, tok, broker)) for a in zip(items, outs, encs))
dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
print(len(items) / dt, len(items) / dcpu, hashlib.sha256(rows.encode()).hexdigest())
"""


ONE_CORE = {"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}  # the tokenizers' pool on one core


def _env(tree: Path) -> dict[str, str]:
    return {
        **os.environ,
        **ONE_CORE,
        "PYTHONPATH": str(tree),
        "HF_HUB_OFFLINE": "1",
        "SOURCE_DATE_EPOCH": "1767225600",
    }


def _py(tree: Path, cwd: Path, *args: str) -> tuple[float, str]:
    """(wall s, stdout) of `python ARGS` with `tree` first on the path, from the neutral folder `cwd`."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *args], cwd=cwd, env=_env(tree), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode not in (0, 1):
        sys.exit(f"{tree}: {' '.join(args[:4])} failed:\n{r.stderr}")
    return wall, r.stdout


def loop_speed(tree: Path, cwd: Path, dataset: Path, tokenizer: str) -> tuple[float, float, str]:
    """(items per wall s, items per CPU s, sha256 of the rows) of the in-process scoring loop in `tree`."""
    out = _py(tree, cwd, "-c", LOOP, str(dataset), tokenizer)[1].split()
    return float(out[0]), float(out[1]), out[2]


def eval_time(
    tree: Path, cwd: Path, dataset: Path, tokenizer: str, workers: int
) -> tuple[float, bytes, dict]:
    """(wall s, results without their seals, report without code_version) of `eval --runner
    verification_only`. Rows carry a seal since eval sealed its files (issue 12): a keyed digest of the
    row, not a score, so the rows are compared without it."""
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
    rows = [json.loads(x) for x in (cwd / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    unsealed = "".join(
        json.dumps({k: v for k, v in r.items() if k != "seal"}, sort_keys=True) + "\n" for r in rows
    )
    return wall, unsealed.encode(), report


WHY = "the scoring definitions changed at 874cf81 (issue 11 section 1: claims-based integration metric)"


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base", default="2ff5711", help="commit to time against (bytes may differ: --why)")
    ap.add_argument("--bytes-base", default="874cf81", help="commit whose result bytes must be the same")
    ap.add_argument("--why", default=WHY, help="why --base's bytes differ, where it is not --bytes-base")
    ap.add_argument("--tokenizer", default="smollm2")
    ap.add_argument("--workers", type=int, default=1, help="--workers of the eval runs")
    return ap.parse_args()


def _dataset(d: Path, n: int, seed: int, tokenizer: str) -> Path:
    data = d / "data"
    data.mkdir()
    cli = ("-m", "kimi_student", "contextual")
    _py(ROOT, data, *cli, "gen", "--n", str(n), "--seed", str(seed), "--out", "c.jsonl")
    _py(ROOT, data, *cli, "extract", "--in", "c.jsonl", "--out", "f.jsonl", "--tokenizer", tokenizer)
    return data / "f.jsonl"


def main() -> None:
    a = _args()
    os.environ.update(ONE_CORE)  # this process's line says so, and every process it starts inherits it
    print(machine_line(""))
    names = ["base", "bytes", "new"] if a.base != a.bytes_base else ["bytes", "new"]
    speed: dict[str, list[float]] = {t: [] for t in names}
    cpu: dict[str, list[float]] = {t: [] for t in names}
    wall: dict[str, list[float]] = {t: [] for t in names}
    base_same: list[bool] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        trees = {"new": ROOT}
        for name, commit in (("bytes", a.bytes_base), ("base", a.base)):
            if name in names:
                (d / f"t-{name}").mkdir()
                trees[name] = base_tree(commit, d / f"t-{name}")
        dataset = _dataset(d, a.n, a.seed, a.tokenizer)
        for rep in range(a.repeats):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            seen: dict[str, tuple[str, bytes, dict]] = {}
            for name in order:
                work = d / f"{rep}-{name}"
                work.mkdir()
                ips, cps, rows = loop_speed(trees[name], work, dataset, a.tokenizer)
                w, results, report = eval_time(trees[name], work, dataset, a.tokenizer, a.workers)
                speed[name].append(ips)
                cpu[name].append(cps)
                wall[name].append(w)
                seen[name] = (rows, results, report)
            same = [seen["bytes"][i] == seen["new"][i] for i in range(3)]
            if not all(same):
                sys.exit(f"repeat {rep}: {a.bytes_base} and new differ (loop rows, results, report): {same}")
            if "base" in seen:
                base_same.append(all(seen["base"][i] == seen["new"][i] for i in range(3)))
    _print(a, names, {"wall": speed, "cpu": cpu}, wall, base_same)


def _print(
    a: argparse.Namespace,
    names: list[str],
    speed: dict[str, dict[str, list[float]]],
    wall: dict[str, list[float]],
    base_same: list[bool],
) -> None:
    label = {"base": a.base, "bytes": a.bytes_base, "new": "new"}
    print(
        f"items: {a.n}  seed: {a.seed}  repeats: {a.repeats} (interleaved, median)  "
        f"loop rows, results JSONL, report (less code_version): byte-identical to {a.bytes_base}"
    )
    print("per core: " + " ".join(f"{k}={v}" for k, v in ONE_CORE.items()) + " in every timed process")
    if base_same:
        state = "identical" if all(base_same) else "different, on purpose"
        print(f"bytes of {a.base}: {state} ({a.why}): timed only")
    print(
        f"{'measure':<36}"
        + "".join(f" {label[n]:>9}" for n in names)
        + "".join(f" {'vs ' + label[n]:>11}" for n in names if n != "new")
    )
    for clock, head in (("wall", "items/s (in-process)"), ("cpu", "items/CPU-s (in-process)")):
        ips = {n: statistics.median(speed[clock][n]) for n in names}
        print(
            f"{'scoring loop, ' + head:<36}"
            + "".join(f" {ips[n]:9.0f}" for n in names)
            + "".join(f" {ips['new'] / ips[n]:10.2f}x" for n in names if n != "new")
        )
    w = {n: statistics.median(wall[n]) for n in names}
    head = f"eval verification_only -w{a.workers}, s"
    print(
        f"{head:<36}"
        + "".join(f" {w[n]:9.2f}" for n in names)
        + "".join(f" {w[n] / w['new']:10.2f}x" for n in names if n != "new")
    )
    print(f"{'  of which items/s':<36}" + "".join(f" {a.n / w[n]:9.0f}" for n in names))


if __name__ == "__main__":
    main()
