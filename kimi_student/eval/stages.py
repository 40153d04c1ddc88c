"""Where an eval run's seconds go: wall and CPU time per stage, in the parent and in each worker, written
as `stage ...` lines to stderr when KIMI_STUDENT_STAGES is set (bench/eval_scale.py reads them). Unset,
nothing is printed and the clocks cost a few microseconds a chunk."""

from __future__ import annotations

import os
import time

ENV = "KIMI_STUDENT_STAGES"


def wanted() -> bool:
    return bool(os.environ.get(ENV))


class Stages:
    """Laps of one process (`who`: main, w0, w1, ...); a stage lapped several times adds up."""

    def __init__(self, who: str, since: float | None = None):
        """`since`: the wall clock (time.time()) the first stage started at, if before this object."""
        self.who = who
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        self._offset = 0.0 if since is None else max(0.0, time.time() - since)
        self.totals: dict[str, list[float]] = {}

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        got = self.totals.setdefault(name, [0.0, 0.0, 0.0])
        got[0] += wall - self._wall + self._offset
        got[1] += cpu - self._cpu
        got[2] = time.time()
        self._wall, self._cpu, self._offset = wall, cpu, 0.0

    def lines(self) -> list[str]:
        """`stage <who> <name> wall <s> cpu <s> at <epoch s>`: a stage's total and when it last ended."""
        return [
            f"stage {self.who} {name} wall {w:.3f} cpu {c:.3f} at {at:.3f}"
            for name, (w, c, at) in self.totals.items()
        ]
