"""How many CPU threads training uses: never more than the cores this process may really run on.

OpenMP threads meet at a barrier after every parallel op, so a thread that waits for a core (another
job on it, or more threads than cores) stalls all the others at every op: on a 2-core machine with one
other busy job a 2-thread toy run took 527 s against 89 s on one thread. The policy:
- an explicit setting wins: `OMP_NUM_THREADS` (torch reads it at start-up) or a caller's own
  `torch.set_num_threads` (the toy recipe's `threads: 1`) are what `torch.get_num_threads()` returns;
- otherwise torch's default, the CPUs OpenMP sees;
- either capped at `available_cores()`: the CPUs of this process's affinity mask (taskset, a container's
  cpuset), further limited by a cgroup CPU quota (`docker --cpus 2` on a 64-core host: OpenMP would
  start 64 threads on 2 cores' worth of time).
The policy only ever lowers the count, so a run that already used no more threads than cores keeps its
thread count, and with it its float sums bit for bit.

`train.threads: adaptive` (the toy) goes further: a `ThreadGovernor` gives training every available core
while the rest of the machine is idle and one thread as soon as other work takes a core, checked every few
steps from /proc/stat (machine busy time minus this process's own). The trainer engages it only where
1 and n threads give the run's first batch bit-identical gradients (`trainer.threads_agree`); else one
thread throughout. On the toy's 2 idle cores of an AMD EPYC, 2 threads trained 1.45x faster than 1 and the
800-step weights matched the one-thread run's sha256; on a Xeon an earlier 2-thread run did not match.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
PROC_STAT = Path("/proc/stat")
CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def cgroup_cpu_limit(v2: Path = CGROUP_V2, v1: tuple[Path, Path] = CGROUP_V1) -> int | None:
    """Whole CPUs a cgroup quota allows (rounded up), or None: no quota, or none readable."""
    try:
        quota, period = v2.read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota, period = v1[0].read_text().strip(), v1[1].read_text().strip()
        except OSError:
            return None
    try:
        q, p = int(quota), int(period)
    except ValueError:  # "max": no quota
        return None
    return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None


def affinity_cores() -> int:
    """The CPUs this process may run on by its affinity mask (a taskset's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available_cores() -> int:
    """The CPUs this process may run on: its affinity mask, limited by a cgroup quota."""
    affinity = affinity_cores()
    limit = cgroup_cpu_limit()
    return max(1, min(affinity, limit) if limit else affinity)


def capped_threads(current: int, cores: int) -> int:
    """The thread count the policy keeps: the current one, never more than the cores (at least 1)."""
    return max(1, min(current, cores))


def apply_thread_policy() -> dict[str, object]:
    """Cap torch's intra-op threads at the available cores; returns what was decided (for logs, benches)."""
    import torch

    before, cores = torch.get_num_threads(), available_cores()
    threads = capped_threads(before, cores)
    if threads != before:
        torch.set_num_threads(threads)
    return {
        "threads": threads,
        "was": before,
        "cores": cores,
        "interop": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def machine_busy_seconds(stat: Path = PROC_STAT) -> float | None:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat); None where unreadable."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
        ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError, IndexError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class ThreadGovernor:
    """Intra-op threads that follow the machine's load (`train.threads: adaptive`): `cores` threads while
    other processes use less than `busy` of a core, else one. `after_step` looks every `every` steps."""

    def __init__(
        self,
        cores: int,
        every: int = 10,
        busy: float = 0.5,
        machine: Callable[[], float | None] = machine_busy_seconds,
        own: Callable[[], float] = time.process_time,
        wall: Callable[[], float] = time.perf_counter,
        set_threads: Callable[[int], None] | None = None,
    ):
        import torch

        self.cores, self.every, self.busy = max(1, cores), every, busy
        self._machine, self._own, self._wall = machine, own, wall
        self._set = set_threads or torch.set_num_threads
        self.threads, self.steps, self.changes = 1, 0, [(0, 1)]
        self._mark = self._sample()
        self._set(1)  # until the first look says the other cores are free

    def _sample(self) -> tuple[float | None, float, float]:
        return self._machine(), self._own(), self._wall()

    def after_step(self) -> int:
        """Count a step; every `every` steps, set the thread count for the next ones. Returns it."""
        self.steps += 1
        if self.steps % self.every:
            return self.threads
        (m0, o0, w0), (m1, o1, w1) = self._mark, (now := self._sample())
        self._mark = now
        if m0 is None or m1 is None or w1 <= w0:
            return self.threads  # no /proc/stat: keep what there is
        others = max(0.0, (m1 - m0) - (o1 - o0)) / (w1 - w0)  # cores other processes kept busy
        want = 1 if others > self.busy else self.cores
        if want != self.threads:
            self.threads = want
            self._set(want)
            self.changes.append((self.steps, want))
        return self.threads
