"""Scoring time of 100 KB adversarial outputs against 100 KB of plain prose, measured in one run.

A model can write anything; the scorer must give every output a row in time linear in its length, whatever
the text repeats (review reliability.md D6, D7, D10). For each pattern of tests/unit/eval/score/
test_hostile_outputs.py (hex runs, e-mail-like runs, digits, URL and tool-call openers, ...) a 100 KB output
is scored by `score_item` with the real tokenizer and ToolBroker, as `eval` scores it, and its CPU time is
printed beside the baseline: 100 KB of ordinary words scored the same way, in the same process. The growth
test (6 KB against 24 KB: linear, not quadratic) stays in the suite; this prints the constant.

Target: every pattern within 20x the baseline (the suite held each to < 2 s of CPU per 100 KB as a timed
test; plain prose scores in ~0.1 s on a 2-core AMD EPYC; a ratio holds on any CPU).

    .venv/bin/python bench/hostile_scoring.py [--kb 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contextual_scale import cpu_name  # noqa: E402 - same folder

from tests.unit.eval.score.test_hostile_outputs import ADVERSARIAL, _best_time, _crawl_item, score  # noqa: E402

TARGET = 20.0
PLAIN = "the crawl found three pages about async runtimes and their schedulers "


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", type=int, default=100, help="output size in KB (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per output; the least CPU time counts")
    args = ap.parse_args()

    from kimi_student.data.contextual import generate
    from kimi_student.tokenizer import load_tokenizer
    from kimi_student.tools.broker import ToolBroker

    tok = load_tokenizer("smollm2")
    _, items, fixtures = generate(60, 5)
    broker, item = ToolBroker(fixtures), _crawl_item(items)
    n = args.kb * 1000

    def timed(unit: str) -> float:
        text = unit * (n // len(unit))
        return _best_time(lambda: score(item, text, tok, broker), args.repeats)  # least CPU time of the runs

    print(f"cpu: {cpu_name()}  ({os.cpu_count()} cores)  output: {args.kb} KB  best of {args.repeats}")
    base = timed(PLAIN)
    print(f"{'baseline (plain prose)':24} {base:8.3f} s cpu   1.00x")
    worst = 0.0
    for name in sorted(ADVERSARIAL):
        t = timed(ADVERSARIAL[name])
        worst = max(worst, t / base)
        print(f"{name:24} {t:8.3f} s cpu  {t / base:5.2f}x")
    verdict = "holds" if worst <= TARGET else "MISSED"
    print(f"worst pattern: {worst:.2f}x the baseline (target <= {TARGET:g}x): {verdict}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
