"""Outputs that would destroy something are refused before any work (exit 2, one line), and a killed
`contextual gen` leaves the old dataset-and-fixtures pair or the new one, never a mix, and no litter after
the next run (reliability review D1, D3, D4, D13, D17)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import (
    KS,
    ROOT,
    kill_at_random,
    kill_seeds,
    ks,
    ks_here,
    read_rows,
    temp_litter,
    write_rows,
)


def _refused(*args: str | Path, here: bool = False) -> str:
    """Run the CLI and return its one-line refusal: in its own process (never long: a check that failed to
    refuse must not hang on a FIFO), or with `here` in this one (`ks_here`: no start-up; for refusals that
    could only ever write a regular file)."""
    if here:
        r = ks_here(*args)
    else:
        r = subprocess.run([*KS, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def _copy(src: Path, dst: Path) -> Path:
    rows = read_rows(src)
    rows[0]["fixtures_dir"] = str((src.parent / rows[0]["fixtures_dir"]).resolve())
    return write_rows(dst, rows)


EVAL = ("eval", "--runner", "verification_only")


@pytest.mark.parametrize(
    "case",
    [
        "eval --out = --in",
        "eval --report = --in",
        "eval --out = --predictions",
        "eval --out = --report",
        "verify --report = --in",
        "kd-mix --out = --prompts",
        "extract --out = --in",
        "tokenizer --out = --in",
        "train --out = --data",
        "eval --out = hard link of --in",
        "eval --out = symlink to --in",
    ],
)
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
    case: str, small: Path, tmp_path: Path
) -> None:
    x = _copy(small, tmp_path / "x.jsonl")
    before = x.read_bytes()
    r, rep = tmp_path / "r.jsonl", tmp_path / "r.json"
    args: dict[str, tuple[str | Path, ...]] = {
        "eval --out = --in": (*EVAL, "--in", x, "--out", x, "--report", rep),
        "eval --report = --in": (*EVAL, "--in", x, "--out", r, "--report", x),
        "eval --out = --predictions": (
            "eval",
            "--runner",
            "predictions",
            "--in",
            small,
            "--predictions",
            x,
            "--out",
            x,
            "--report",
            rep,
        ),
        "eval --out = --report": (*EVAL, "--in", small, "--out", x, "--report", x),
        "verify --report = --in": ("contextual", "verify", "--in", x, "--report", x),
        "kd-mix --out = --prompts": ("kd-mix", "--prompts", x, "--out", x),
        "extract --out = --in": ("contextual", "extract", "--in", x, "--out", x),
        "tokenizer --out = --in": ("tokenizer", "train", "--in", x, "--out", x),
        "train --out = --data": ("train", "--data", x, "--out", x),
    }.get(case, ())
    if "link" in case:
        alias = tmp_path / "alias.jsonl"
        os.link(x, alias) if "hard" in case else alias.symlink_to(x)
        args = (*EVAL, "--in", x, "--out", alias, "--report", rep)
    line = _refused(*args, here=case != "eval --out = --in")
    first, second = case.split()[1], case.split()[-1]
    assert (
        f"{first}: is the same file as {second}" in line or f"{second}: is the same file as {first}" in line
    )
    assert x.read_bytes() == before
    assert not r.exists() and not rep.exists() and not (tmp_path / "x.jsonl.parts").exists()


def test_a_fifo_is_refused_as_any_output(small: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (
        (*EVAL, "--in", small, "--out", fifo, "--report", tmp_path / "r.json"),
        (*EVAL, "--in", small, "--out", tmp_path / "r.jsonl", "--report", fifo),
        ("contextual", "gen", "--n", 3, "--out", fifo),
        ("contextual", "verify", "--in", small, "--report", fifo),
        ("tokenizer", "train", "--in", small, "--out", fifo),
        ("kd-mix", "--prompts", small, "--out", fifo),
    ):
        assert "is a FIFO" in _refused(*args)
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]  # no fixtures folder, no results


def test_a_fifo_behind_a_symlink_or_as_the_fixtures_folder_is_refused(small: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "fifo")
    assert "is a FIFO" in _refused("contextual", "gen", "--n", 3, "--out", tmp_path / "link.jsonl")
    os.mkfifo(tmp_path / "d.jsonl.fixtures")
    assert "is a FIFO" in _refused("contextual", "gen", "--n", 3, "--out", tmp_path / "d.jsonl")
    assert not (tmp_path / "d.jsonl").exists()


def test_a_character_device_is_never_replaced(small: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod of a character device needs root")
    dev = tmp_path / "mynull"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    assert "is a device" in _refused(*EVAL, "--in", small, "--out", dev, "--report", tmp_path / "r.json")
    assert "is a device" in _refused("contextual", "gen", "--n", 3, "--out", dev)
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    # The library's own writer refuses it too, whoever calls it.
    from kimi_student.errors import InputError
    from kimi_student.jsonl import write_json

    with pytest.raises(InputError, match="is a device"):
        write_json(dev, {})
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


def test_an_existing_folder_as_out_is_refused(small: Path, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    assert "is a folder" in _refused(
        *EVAL, "--in", small, "--out", tmp_path / "d", "--report", tmp_path / "r.json", here=True
    )
    assert "is a folder" in _refused("contextual", "gen", "--n", 3, "--out", tmp_path / "d", here=True)
    assert not (tmp_path / "r.json").exists() and not list((tmp_path / "d").iterdir())
    (tmp_path / "afile").write_text("keep")
    assert "is a file, not a folder" in _refused(
        "train", "--data", small, "--out", tmp_path / "afile", here=True
    )
    assert (tmp_path / "afile").read_text() == "keep"


def test_an_output_folder_that_cannot_be_made_fails_before_scoring(small: Path, tmp_path: Path) -> None:
    (tmp_path / "somefile").write_text("x")
    out, rep = tmp_path / "r.jsonl", tmp_path / "somefile" / "r.json"
    line = _refused(*EVAL, "--in", small, "--out", out, "--report", rep, here=True)
    assert "--report" in line and "is not a folder" in line
    assert not out.exists() and not (tmp_path / "r.jsonl.parts").exists()  # nothing was scored
    assert "--out" in _refused(
        "contextual", "gen", "--n", 3, "--out", tmp_path / "somefile" / "c.jsonl", here=True
    )


def test_an_unwritable_output_folder_fails_before_scoring(small: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes through permission bits: make the folder immutable instead
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", ro]).returncode != 0:
            pytest.skip("root, and no immutable attribute on this filesystem")
    else:
        ro.chmod(0o555)
    try:
        line = _refused(
            *EVAL, "--in", small, "--out", tmp_path / "r.jsonl", "--report", ro / "sub" / "r.json", here=True
        )
        assert "--report" in line and "not writable" in line
        assert not (tmp_path / "r.jsonl").exists() and not (tmp_path / "r.jsonl.parts").exists()
        assert "not writable" in _refused("contextual", "gen", "--n", 3, "--out", ro / "c.jsonl", here=True)
        assert "not writable" in _refused("train", "--data", small, "--out", ro / "run", here=True)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", ro], check=True)
        ro.chmod(0o755)
    assert not list(ro.iterdir())


# ---- SIGKILL of `contextual gen` over an existing dataset -----------------------------------------------


def _pair_is_whole(ds: Path) -> bytes:
    """The dataset on disk, after checking that its fixtures are the ones its header names, as a reader
    (verify) finds them."""
    r = ks_here("contextual", "verify", "--in", ds, "--report", ds.parent / "verify.json")
    assert r.returncode == 0, r.stdout + r.stderr
    return ds.read_bytes()


# A second proof, in `make test-slow`: tests/unit/test_outputs.py::test_a_kill_at_every_rename_or_removal_leaves_
# the_old_pair_or_the_new_one stops the same writer at every rename and removal it makes, in make test.
@pytest.mark.extra
@pytest.mark.parametrize("seed", kill_seeds())
def test_a_killed_gen_leaves_the_old_pair_or_the_new_one(seed: int, tmp_path: Path) -> None:
    n = 4000
    ref, run = tmp_path / "ref", tmp_path / "run"
    for folder, s in ((ref, 2), (run, 1)):
        t0 = time.monotonic()
        r = ks("contextual", "gen", "--n", n, "--seed", s, "--out", folder / "c.jsonl")
        assert r.returncode == 0, r.stderr
    took = time.monotonic() - t0
    old, new = (run / "c.jsonl").read_bytes(), (ref / "c.jsonl").read_bytes()
    args = ["contextual", "gen", "--n", str(n), "--seed", "2", "--out", str(run / "c.jsonl")]
    kill_at_random(args, seed, took)  # or it finished first: the new pair must then be there whole
    assert _pair_is_whole(run / "c.jsonl") in (old, new)
    r = ks(*args)
    assert r.returncode == 0, r.stderr
    assert _pair_is_whole(run / "c.jsonl") == new
    assert temp_litter(run) == []
