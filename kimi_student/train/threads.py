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
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
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
