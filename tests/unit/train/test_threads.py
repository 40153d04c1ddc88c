"""Training's thread policy (train.threads): an explicit count is kept, never more threads than the cores
this process may use (affinity, cgroup quota). In-process, no model: a few milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kimi_student.train import threads as TH


@pytest.mark.parametrize(
    ("cpu_max", "want"),
    [
        ("200000 100000\n", 2),
        ("150000 100000\n", 2),  # 1.5 CPUs of time: two threads can use it, a third only waits
        ("50000 100000\n", 1),
        ("max 100000\n", None),  # no quota
    ],
)
def test_cgroup_v2_quota_in_whole_cpus(tmp_path: Path, cpu_max: str, want: int | None) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert TH.cgroup_cpu_limit(tmp_path / "cpu.max", (tmp_path / "q", tmp_path / "p")) == want


@pytest.mark.parametrize(("quota", "want"), [("300000", 3), ("-1", None)])
def test_cgroup_v1_quota_when_there_is_no_v2_file(tmp_path: Path, quota: str, want: int | None) -> None:
    (tmp_path / "q").write_text(quota + "\n")
    (tmp_path / "p").write_text("100000\n")
    assert TH.cgroup_cpu_limit(tmp_path / "none", (tmp_path / "q", tmp_path / "p")) == want


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert TH.cgroup_cpu_limit(tmp_path / "none", (tmp_path / "q", tmp_path / "p")) is None


@pytest.mark.parametrize(("current", "cores", "want"), [(4, 2, 2), (2, 2, 2), (1, 2, 1), (0, 2, 1)])
def test_the_count_is_kept_but_never_above_the_cores(current: int, cores: int, want: int) -> None:
    assert TH.capped_threads(current, cores) == want


def test_available_cores_is_the_affinity_limited_by_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(TH, "cgroup_cpu_limit", lambda: None)
    assert TH.available_cores() == 4
    monkeypatch.setattr(TH, "cgroup_cpu_limit", lambda: 2)
    assert TH.available_cores() == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {5})
    assert TH.available_cores() == 1


def test_apply_lowers_torch_threads_to_the_cores_and_keeps_an_explicit_lower_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = torch.get_num_threads()
    monkeypatch.setattr(TH, "available_cores", lambda: 1)
    try:
        torch.set_num_threads(3)  # more threads than the one core this "process" may use
        got = TH.apply_thread_policy()
        assert (got["threads"], got["was"], got["cores"]) == (1, 3, 1)
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(TH, "available_cores", lambda: 8)
        got = TH.apply_thread_policy()  # the caller's 1 thread (the toy recipe's) is kept, not raised
        assert got["threads"] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


class _Machine:
    """A machine's clocks as the governor reads them: busy CPU seconds of all cores, this process's CPU
    seconds and wall time, advanced by `tick`."""

    def __init__(self) -> None:
        self.busy, self.own, self.wall = 0.0, 0.0, 0.0

    def tick(self, seconds: float, ours: float, others: float) -> None:
        self.wall += seconds
        self.own += ours * seconds
        self.busy += (ours + others) * seconds


def test_the_governor_takes_the_cores_while_idle_and_one_thread_while_shared() -> None:
    m, set_to = _Machine(), []
    g = TH.ThreadGovernor(2, every=5, machine=lambda: m.busy, own=lambda: m.own, wall=lambda: m.wall,
                          set_threads=set_to.append)  # fmt: skip
    assert g.threads == 1 and set_to == [1]  # one thread until it has looked
    for _ in range(5):
        m.tick(0.2, ours=1.0, others=0.05)
        g.after_step()
    assert g.threads == 2 and set_to == [1, 2]  # the other core is idle
    for _ in range(4):
        m.tick(0.2, ours=1.9, others=1.0)  # another job takes a core: within `every` steps ...
        assert g.after_step() == 2
    m.tick(0.2, ours=1.9, others=1.0)
    assert g.after_step() == 1  # ... one thread
    for _ in range(5):
        m.tick(0.2, ours=1.0, others=0.4)  # a little other work (under half a core): the cores again
        g.after_step()
    assert g.threads == 2 and g.changes == [(0, 1), (5, 2), (10, 1), (15, 2)] and set_to == [1, 2, 1, 2]


def test_the_governor_keeps_its_count_where_there_is_no_proc_stat(tmp_path: Path) -> None:
    assert TH.machine_busy_seconds(tmp_path / "none") is None
    g = TH.ThreadGovernor(2, every=1, machine=lambda: None, set_threads=lambda n: None)
    assert [g.after_step() for _ in range(3)] == [1, 1, 1]


def test_machine_busy_seconds_is_every_state_but_idle_and_iowait(tmp_path: Path) -> None:
    import os

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 20 900 50 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    assert TH.machine_busy_seconds(stat) == pytest.approx(130 / os.sysconf("SC_CLK_TCK"))
