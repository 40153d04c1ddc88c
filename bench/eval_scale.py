"""Evaluation at scale, through the real CLI: items/s of `eval --workers 1` against `--workers 2` on the
same 10k items, measured in one run (target: 2 workers >= 1.8x one), and the time of a 10k
`verification_only` eval with the same workers (target <= 5 s on 2 cores, issue 11 section 5).

The predictions runner scores a file holding each item's gold teacher text (written here), so the work
is the scorer's and the numbers say how well it splits across processes. Each figure is the whole
command, start-up of the worker processes included; both runs must write the same bytes.

    .venv/bin/python bench/eval_scale.py [--n 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

from contextual_scale import cpu_name, run  # same folder: the generation and CLI helpers


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tokenizer", default="smollm2")
    a = ap.parse_args()
    import torch  # only to report its thread count: the scorer itself does not use torch

    print(
        f"cpu: {cpu_name()}  cores: {os.cpu_count()}  python {platform.python_version()}  "
        f"torch threads: {torch.get_num_threads()}  "
        f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}"
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

        def timed(runner: list[str], workers: int, name: str) -> float:
            (d / name).mkdir()
            out, rep = d / name / "r.jsonl", d / name / "r.json"
            cmd = ["eval", *runner, "--in", str(final), "--out", str(out), "--report", str(rep)]
            return run(*cmd, "--workers", str(workers))

        preds = ["--runner", "predictions", "--predictions", str(pred)]
        par_before = cpu_parallelism(a.workers)
        t1 = timed(preds, 1, "w1")
        tn = timed(preds, a.workers, f"w{a.workers}")
        par_after = cpu_parallelism(a.workers)
        t_ver = timed(["--runner", "verification_only"], a.workers, "ver")
        same = {
            f: (d / "w1" / f).read_bytes() == (d / f"w{a.workers}" / f).read_bytes()
            for f in ("r.jsonl", "r.json")
        }
        s = json.loads((d / "w1" / "r.json").read_text())["summary"]
    print(f"items: {a.n}  predictions = gold teacher text  (f1_lax {s['integration_f1_lax']})")
    print(f"eval predictions --workers 1         {t1:7.2f} s  {a.n / t1:7.0f} items/s")
    print(f"eval predictions --workers {a.workers:<2}        {tn:7.2f} s  {a.n / tn:7.0f} items/s")
    print(
        f"speed-up with {a.workers} workers: {t1 / tn:.2f}x (target >= 1.8x)  (CPU parallelism available, {a.workers} processes "
        f"of a pure-Python loop: {par_before:.2f}x before, {par_after:.2f}x after)"
    )
    print(
        f"byte-identical: results {same['r.jsonl']}, report {same['r.json']}"
        + ("" if same["r.json"] else " (code_version is in the report: was a commit made during the bench?)")
    )
    ok = "OK" if t_ver <= 5 else "MISSED"
    print(
        f"eval verification_only --workers {a.workers:<2} {t_ver:7.2f} s  {a.n / t_ver:7.0f} items/s  "
        f"target <= 5 s: {ok}"
    )


if __name__ == "__main__":
    main()
