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
from kimi_student.outputs import artifacts_writer, check_outputs, clear_stale_temps, temp_path
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


def _export(out: Path, tag: str, fail: bool = False) -> None:
    """An export's artifacts (a package folder, a file) and its manifest naming them, through artifacts_writer."""
    with artifacts_writer(out, "manifest.json") as stage:
        (stage / "m.mlpackage" / "Data").mkdir(parents=True)
        (stage / "m.mlpackage" / "Data" / "w.bin").write_text(tag * 100)
        (stage / "seq.pt2").write_text(tag)
        if fail:
            raise ValueError("conversion failed")
        (stage / "manifest.json").write_text(json.dumps({"tag": tag}))


def _state(out: Path) -> tuple[str | None, str | None, str | None]:
    """(the manifest's tag, the package's, the file's): None where it is missing, "half" for a package
    folder without its whole weights."""
    man = out / "manifest.json"
    pkg, pt2 = out / "m.mlpackage", out / "seq.pt2"
    w = pkg / "Data" / "w.bin"
    return (
        json.loads(man.read_text())["tag"] if man.exists() else None,
        (w.read_text()[:1] if w.is_file() and len(w.read_text()) == 100 else "half")
        if pkg.exists()
        else None,
        pt2.read_text() if pt2.exists() else None,
    )


def test_an_export_publishes_its_artifacts_then_its_manifest_and_a_failed_one_changes_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "art"
    _export(out, "a")
    (out / "notes.txt").write_text("mine")  # not the export's: left alone
    assert _state(out) == ("a", "a", "a")
    with pytest.raises(ValueError, match="conversion failed"):
        _export(out, "b", fail=True)
    assert _state(out) == ("a", "a", "a") and sorted(os.listdir(out)) == [
        "m.mlpackage", "manifest.json", "notes.txt", "seq.pt2"
    ]  # fmt: skip
    _export(out, "b")
    assert _state(out) == ("b", "b", "b") and (out / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(out)) == ["m.mlpackage", "manifest.json", "notes.txt", "seq.pt2"]


def test_an_export_killed_at_each_rename_or_removal_never_leaves_a_manifest_over_other_artifacts(
    tmp_path: Path,
) -> None:
    """Killed anywhere in writing or publishing: the manifest in `out` is the old one over the old artifacts,
    the new one over the new ones, or missing (whole artifacts, a mix of the two exports); the next export
    leaves its own and nothing else."""
    seen = set()
    step = 1
    while True:
        out = tmp_path / f"k{step}"
        _export(out, "a")
        if not killed_at_rename(step, lambda: _export(out, "b")):  # noqa: B023 - called at once
            break
        state = _state(out)
        assert state[0] is None or state == (state[0],) * 3, (step, state)
        assert "half" not in state and state[2] is not None, (step, state)  # whole, or a folder in between
        seen.add(state[0])
        _export(out, "b")
        assert _state(out) == ("b", "b", "b"), step
        assert sorted(os.listdir(out)) == ["m.mlpackage", "manifest.json", "seq.pt2"], step  # no temp left
        step += 1
    assert seen == {"a", None, "b"} and step > 8, (seen, step)  # killed before, between and after
