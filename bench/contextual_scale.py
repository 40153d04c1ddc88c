"""Speed of the contextual pipeline and the scorer at scale, run through the real CLI.

Targets (issue #2): gen 10k <= 30 s, verify 10k <= 60 s on 2 cores; scoring throughput in items/s.
Each stage is also shown as a ratio to an I/O floor measured in the same run (reading and re-writing
the same JSONL), since absolute times drift between these machines.

    .venv/bin/python bench/contextual_scale.py [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line(extra: str = "") -> str:
    """What a bench ran on: CPU, cores, load, Python and the tokenizers' thread setting."""
    return (
        f"cpu: {cpu_name()}  cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}  "
        f"python {platform.python_version()}  {extra + '  ' if extra else ''}"
        f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}"
    )


def write_bench_report(path: Path, bench: str, summary: dict, **header: object) -> None:
    """A bench's figures as a report the dashboard draws (`header.report` "bench"): when, which code, the
    machine (CPU, cores, load, bf16 support) and `header` (what it measured with), and `summary` (numbers)."""
    import torch

    from kimi_student.eval.report import created_at
    from kimi_student.fingerprint import code_version
    from kimi_student.jsonl import write_json

    write_json(
        path,
        {
            "header": {
                "report": "bench",
                "bench": bench,
                "created_at": created_at(),
                "code_version": code_version(),
                "cpu": cpu_name(),
                "cores": os.cpu_count(),
                "load": round(os.getloadavg()[0], 2),
                "bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
                **header,
            },
            "summary": summary,
        },
    )


def base_tree(commit: str, dest: Path) -> Path:
    """The package at `commit`, unpacked under `dest/base` (run it with PYTHONPATH set there)."""
    base = dest / "base"
    base.mkdir()
    archive = subprocess.run(
        ["git", "archive", commit, "kimi_student"], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
    return base


def run(*args: str) -> float:
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "kimi_student", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    dt = time.perf_counter() - t
    if r.returncode not in (0, 1):
        sys.exit(f"{' '.join(args)} failed:\n{r.stderr}")
    return dt


def io_floor(path: Path, out: Path) -> float:
    t = time.perf_counter()
    with open(path, encoding="utf-8") as fh, open(out, "w", encoding="utf-8") as oh:
        for line in fh:
            oh.write(json.dumps(json.loads(line), ensure_ascii=False) + "\n")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--tokenizer", default="smollm2")
    a = ap.parse_args()
    print(
        f"cpu: {cpu_name()}  cores: {os.cpu_count()}  python {platform.python_version()}  precision: n/a (no model)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        gen, final = d / "c.jsonl", d / "final.jsonl"
        run("tokenizer", "fingerprint", a.tokenizer)  # warm the tokenizer cache: not part of any stage
        t_gen = run("contextual", "gen", "--n", str(a.n), "--seed", "0", "--out", str(gen))
        t_ext = run(
            "contextual", "extract", "--in", str(gen), "--out", str(final), "--tokenizer", a.tokenizer
        )
        t_ver = run("contextual", "verify", "--in", str(final), "--report", str(d / "v.json"))
        t_eval = run(
            "eval",
            "--runner",
            "verification_only",
            "--in",
            str(final),
            "--out",
            str(d / "r.jsonl"),
            "--report",
            str(d / "rep.json"),
        )
        floor = io_floor(final, d / "copy.jsonl")
        size_mb = final.stat().st_size / 1e6
        rep = json.loads((d / "rep.json").read_text())["summary"]
    print(f"items: {a.n}  dataset: {size_mb:.1f} MB  I/O floor (read+parse+write): {floor:.2f} s")
    rows = [
        ("gen", t_gen, 30.0),
        ("extract", t_ext, None),
        ("verify", t_ver, 60.0),
        ("eval verification_only", t_eval, 60.0),
    ]
    for name, t, target in rows:
        tgt = f"target <= {target:.0f} s: {'OK' if t <= target else 'MISSED'}" if target else ""
        print(f"{name:<24} {t:7.2f} s  {a.n / t:8.0f} items/s  {t / floor:5.1f}x I/O floor  {tgt}")
    print(f"scoring throughput: {a.n / t_eval:.0f} items/s (whole eval command, including start-up)")
    print(
        f"gold check: f1_lax={rep['integration_f1_lax']} f1_strict={rep['integration_f1_strict']} "
        f"hit_rate={rep['fixture_hit_rate']} token_align={rep['token_align_ok_rate']}"
    )


if __name__ == "__main__":
    main()
