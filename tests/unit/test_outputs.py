"""`outputs`: a dataset and its fixtures replaced together whatever moment a kill comes at, and temp files
of dead writers cleared while a live writer's are kept."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from kimi_student.data.contextual import generate, write_dataset
from kimi_student.data.dataset import dataset_fixture_dirs, read_dataset
from kimi_student.errors import InputError
from kimi_student.fingerprint import sha256_dir
from kimi_student.jsonl import write_json
from kimi_student.outputs import check_outputs, clear_stale_temps, temp_path
from tests.support import dead_pid, killed_at_rename


def _write(out: Path, seed: int) -> None:
    header, items, fixtures = generate(40, seed)
    write_dataset(out, header, items, fixtures)


def _consistent(out: Path) -> bytes:
    """The pair as a reader finds it: the fixtures folder it takes is the one its header names."""
    header, _ = read_dataset(out)
    assert sha256_dir(dataset_fixture_dirs(out, header)[0], "*.jsonl") == header["fixtures_sha256"]
    return out.read_bytes()


def test_a_kill_at_every_rename_or_removal_leaves_the_old_pair_or_the_new_one(tmp_path: Path) -> None:
    ref = tmp_path / "ref" / "c.jsonl"
    _write(ref, 2)
    new = ref.read_bytes()
    seen = set()
    step = 1
    while True:
        out = tmp_path / f"s{step}" / "c.jsonl"
        _write(out, 1)
        old = out.read_bytes()
        if not killed_at_rename(step, lambda: _write(out, 2)):  # noqa: B023 - called at once
            assert out.read_bytes() == new  # ran to the end: every moment was tried
            break
        seen.add(_consistent(out) == new)
        _write(out, 2)  # the next run settles what the kill left, and leaves nothing behind
        assert _consistent(out) == new and old != new
        assert sorted(p.name for p in out.parent.iterdir()) == ["c.jsonl", "c.jsonl.fixtures"]
        step += 1
    assert seen == {False, True} and step > 4  # killed both before and after the dataset went in


def test_stale_temps_of_dead_writers_go_and_live_ones_stay(tmp_path: Path) -> None:
    dest = tmp_path / "r.jsonl"
    pid = dead_pid()
    dead = dest.with_name(f".r.jsonl.{pid}.abcd1234.tmp")
    mine, parents = temp_path(dest), dest.with_name(f".r.jsonl.{os.getppid()}.00ff00ff.tmp")
    legacy_old, legacy_new = tmp_path / ".r.jsonl.ab_cd12z.tmp", tmp_path / ".r.jsonl.zz99zz99.tmp"
    other = tmp_path / ".other.jsonl.1.abcd.tmp"
    for p in (dead, mine, parents, legacy_old, legacy_new, other):
        p.write_text("x")
    os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))
    (tmp_path / f".r.jsonl.{pid}.00000000.tmp").mkdir()  # a dead writer's temp folder
    clear_stale_temps(dest)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for p in (mine, parents, legacy_new, other))
    write_json(dest, {"a": 1})  # the writer clears them itself
    assert dest.read_text() == '{\n  "a": 1\n}\n'


def test_check_outputs_refuses_a_socket_and_names_the_flag(tmp_path: Path) -> None:
    sock = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        with pytest.raises(InputError, match=r"--report: is a socket"):
            check_outputs({}, {"--report": sock})
    check_outputs({"--in": tmp_path / "absent"}, {"--out": tmp_path / "new" / "deeper" / "r.jsonl"})
    assert not (tmp_path / "new").exists()  # checking makes nothing


def test_the_writer_never_replaces_a_fifo_and_replaces_a_symlink_not_its_target(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is a FIFO"):
        write_json(fifo, {})
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(os.listdir(tmp_path)) == ["fifo"]
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("keep")
    link.symlink_to(target)
    write_json(link, {"a": 1})  # a link planted in a run folder cannot aim the write elsewhere
    assert target.read_text() == "keep" and not link.is_symlink() and json.loads(link.read_text()) == {"a": 1}


def test_a_probe_or_a_temp_that_a_kill_left_goes_with_the_next_writer(tmp_path: Path) -> None:
    """A kill between making a temp and renaming or removing it (the writability probe, a drafter shard
    written by safetensors) leaves it; the next writer of the same name removes it (found by killing
    commands at each rename and removal: tests/integration/test_kill_each_rename.py)."""
    pid = dead_pid()
    probe = tmp_path / f".ks-probe.{pid}.0badc0de.tmp"
    shard = tmp_path / f".shard-00000.safetensors.{pid}.0badc0de.tmp"
    for p in (probe, shard):
        p.write_text("x")
    check_outputs({}, {"--out": tmp_path / "r.jsonl"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [shard.name]  # the probe went, and its own too
    tmp = temp_path(tmp_path / "shard-00000.safetensors")
    assert not tmp.exists() and list(tmp_path.iterdir()) == []
