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
