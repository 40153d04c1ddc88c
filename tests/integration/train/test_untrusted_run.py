"""A run folder is untrusted input (issue 12, reliability review D2/D11/D18): through the real
`kimi-student train`, every tampered checkpoint, manifest or LATEST pointer, and a run folder with nothing
to resume from, gives exit 2 with one `error:` line naming the file, leaves the log and the folder as they
were, and never runs code planted in a state file."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kimi_student.errors import InputError
from kimi_student.fingerprint import sha256_file
from kimi_student.manifest import file_digests
from kimi_student.models.student import load_spec
from kimi_student.train import trainer as T
from tests.integration.train.test_train import _config, _log
from tests.support import ks, ks_here

pytestmark = [pytest.mark.slow]

STEP = "step-000003"


class Planted:
    """Unpickling this runs `open(marker, "w")`: the marker file is the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def base(dataset: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An unfinished run: 4 of 6 steps logged, the checkpoint at step 3 named by LATEST, no final/."""
    tmp = tmp_path_factory.mktemp("untrusted")
    cfg = _config(tmp, max_steps=6, checkpoint_every=3)
    T.train(load_spec(cfg, "toy"), tmp / "run", data=str(dataset["final"]), stop_after=4, precision="no")
    assert (tmp / "run" / "checkpoints" / "LATEST").read_text() == STEP
    assert not (tmp / "run" / "final").exists()
    return {"cfg": cfg, "run": tmp / "run", "data": dataset["final"]}


@pytest.fixture(scope="module")
def finished(base: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run uninterrupted: its final weights."""
    ref = tmp_path_factory.mktemp("finished") / "ref"
    T.train(load_spec(base["cfg"], "toy"), ref, data=str(base["data"]), precision="no")
    return ref / "final" / "model.safetensors"


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (links not followed), with its kind, size and mtime."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[p.relative_to(root).as_posix()] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _reseal_digests(ckpt: Path) -> None:
    """What an attacker can do without the key: recompute every sha256, keep the old seal."""
    path = ckpt / "manifest.json"
    body = json.loads(path.read_text())
    body["files"] = file_digests(ckpt)
    path.write_text(json.dumps(body, indent=2, sort_keys=True))


def _plant_pickle(path: Path, marker: Path) -> None:
    torch.save({"step": 3, "optimizer": Planted(marker)}, path)


def _flip_a_weight(ckpt: Path) -> None:
    w = ckpt / "model" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-8] ^= 0x40
    w.write_bytes(bytes(data))


def _old_format(ckpt: Path, marker: Path) -> None:
    """The format before issue 12: a pickled state.pt and a flat {path: sha256} manifest."""
    for name in ("state.safetensors", "state.json"):
        (ckpt / name).unlink()
    _plant_pickle(ckpt / "state.pt", marker)
    (ckpt / "manifest.json").write_text(json.dumps(file_digests(ckpt)))


def _symlinked_step(run: Path, outside: Path) -> None:
    shutil.copytree(run / "checkpoints" / STEP, outside / STEP)
    (run / "checkpoints" / "step-000009").symlink_to(outside / STEP, target_is_directory=True)
    (run / "checkpoints" / "LATEST").write_text("step-000009")


def _checkpoints_elsewhere(run: Path, outside: Path) -> None:
    shutil.move(run / "checkpoints", outside / "checkpoints")
    (run / "checkpoints").symlink_to(outside / "checkpoints", target_is_directory=True)


def _symlinked_file(ckpt: Path, outside: Path) -> None:
    cfg = ckpt / "model" / "config.json"
    shutil.copy(cfg, outside / "config.json")
    cfg.unlink()
    cfg.symlink_to(outside / "config.json")


Tamper = Callable[[Path, Path, Path], None]  # (run, a folder outside it, the marker path)
CK = f"checkpoints/{STEP}"
CASES: dict[str, tuple[Tamper, str, str]] = {
    # name: (tamper, the file the error names, what it says)
    "a file edited, its digest kept": (
        lambda r, o, m: (r / CK / "model" / "config.json").write_text(
            (r / CK / "model" / "config.json").read_text().replace('"hidden_size": 64', '"hidden_size":  64')
        ),
        CK,
        "model/config.json does not match its sha256",
    ),
    "manifest {}": (
        lambda r, o, m: (r / CK / "manifest.json").write_text("{}"),
        f"{CK}/manifest.json",
        "not a sealed checkpoint manifest",
    ),
    "manifest a list": (
        lambda r, o, m: (r / CK / "manifest.json").write_text("[]"),
        f"{CK}/manifest.json",
        "expected a JSON object, got list",
    ),
    "manifest garbage": (
        lambda r, o, m: (r / CK / "manifest.json").write_text("{oops"),
        f"{CK}/manifest.json",
        "unreadable manifest",
    ),
    "manifest missing": (
        lambda r, o, m: (r / CK / "manifest.json").unlink(),
        f"{CK}/manifest.json",
        "manifest not found",
    ),
    "weights changed, manifest rehashed": (
        lambda r, o, m: (_flip_a_weight(r / CK), _reseal_digests(r / CK)),
        f"{CK}/manifest.json",
        "seal does not match",
    ),
    "pickle as state, manifest rehashed": (
        lambda r, o, m: (_plant_pickle(r / CK / "state.safetensors", m), _reseal_digests(r / CK)),
        f"{CK}/manifest.json",
        "seal does not match",
    ),
    "old format: pickled state.pt, flat manifest": (
        lambda r, o, m: _old_format(r / CK, m),
        f"{CK}/manifest.json",
        "not a sealed checkpoint manifest",
    ),
    "a pickle beside the weights": (
        lambda r, o, m: _plant_pickle(r / CK / "model" / "pytorch_model.bin", m),
        CK,
        "model/pytorch_model.bin is not listed in manifest.json",
    ),
    "a listed file missing": (
        lambda r, o, m: (r / CK / "model" / "tokenizer.json").unlink(),
        CK,
        "model/tokenizer.json is listed in manifest.json but missing",
    ),
    "state.safetensors deleted": (
        lambda r, o, m: (r / CK / "state.safetensors").unlink(),
        CK,
        "state.safetensors is listed in manifest.json but missing",
    ),
    "state.json deleted": (
        lambda r, o, m: (r / CK / "state.json").unlink(),
        CK,
        "state.json is listed in manifest.json but missing",
    ),
    "a file is a symlink": (
        lambda r, o, m: _symlinked_file(r / CK, o),
        CK,
        "model/config.json is a symlink",
    ),
    "LATEST ../../elsewhere": (
        lambda r, o, m: (r / "checkpoints" / "LATEST").write_text("../../elsewhere"),
        "checkpoints/LATEST",
        "names '../../elsewhere', not a checkpoint folder step-NNNNNN",
    ),
    "LATEST absolute": (
        lambda r, o, m: (r / "checkpoints" / "LATEST").write_text(str(r / CK)),
        "checkpoints/LATEST",
        "not a checkpoint folder step-NNNNNN",
    ),
    "LATEST names a symlink outside": (
        lambda r, o, m: _symlinked_step(r, o),
        "checkpoints/LATEST",
        "names step-000009, which is a symlink",
    ),
    "checkpoints/ a symlink outside": (
        lambda r, o, m: _checkpoints_elsewhere(r, o),
        "checkpoints/LATEST",
        "resolves outside the run folder",
    ),
    "LATEST itself a symlink": (
        lambda r, o, m: (
            (o / "LATEST").write_text(STEP),
            (r / "checkpoints" / "LATEST").unlink(),
            (r / "checkpoints" / "LATEST").symlink_to(o / "LATEST"),
        ),
        "checkpoints/LATEST",
        "not a regular file",
    ),
    "LATEST names no folder": (
        lambda r, o, m: (r / "checkpoints" / "LATEST").write_text("step-000009"),
        "checkpoints/LATEST",
        "names step-000009, which does not exist; rerun with --fresh",
    ),
    "a log but no checkpoint": (
        lambda r, o, m: shutil.rmtree(r / "checkpoints"),
        "train_log.jsonl",
        "an unfinished run without a checkpoint to resume from",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_run_folder_exits_2_with_one_line_and_changes_nothing(
    base: dict[str, Path], tmp_path: Path, case: str
) -> None:
    tamper, where, what = CASES[case]
    run, outside, marker = tmp_path / "run", tmp_path / "outside", tmp_path / "MARKER"
    shutil.copytree(base["run"], run, symlinks=True)
    outside.mkdir()
    tamper(run, outside, marker)
    log, before, before_outside = (run / "train_log.jsonl").read_bytes(), _snapshot(run), _snapshot(outside)
    # In this process (each case refuses before any work); the first case also as its own process.
    cli = ks if case == next(iter(CASES)) else ks_here
    r = cli("train", "--config", base["cfg"], "--data", base["data"], "--out", run, "--precision", "no")
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"{run / where}: " in line and what in line, line
    assert (run / "train_log.jsonl").read_bytes() == log
    assert _snapshot(run) == before and _snapshot(outside) == before_outside
    assert not marker.exists()


def test_a_checkpoint_sealed_with_another_key_is_refused(base: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    log, before = (run / "train_log.jsonl").read_bytes(), _snapshot(run)
    args = ("train", "--config", base["cfg"], "--data", base["data"], "--out", run, "--precision", "no")
    r = ks_here(*args, env={"KIMI_STUDENT_RUN_KEY": "ab" * 32})
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: {run / CK / 'manifest.json'}: seal does not match")
    assert "another run key" in line and line.endswith(
        "rerun with --fresh to discard the run's checkpoints and log and start again"
    )
    assert (run / "train_log.jsonl").read_bytes() == log and _snapshot(run) == before


def test_a_checkpoint_of_another_config_is_refused(base: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    log = (run / "train_log.jsonl").read_bytes()
    other = _config(tmp_path, max_steps=6, checkpoint_every=3, lr=1e-3)
    r = ks_here("train", "--config", other, "--data", base["data"], "--out", run, "--precision", "no")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert "written by a run with another training config" in line and "--fresh" in line
    assert (run / "train_log.jsonl").read_bytes() == log


def test_fresh_discards_an_unfinished_run_and_refuses_a_finished_one(
    base: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    shutil.rmtree(run / "checkpoints")  # a log and nothing to resume from: refused without --fresh
    args = ("train", "--config", base["cfg"], "--data", base["data"], "--out", run, "--precision", "no")
    r = ks_here(*args, "--fresh")  # in-process: test_kill_anywhere trains in processes of their own
    assert r.returncode == 0, r.stderr
    assert f"--fresh: discarded {run / 'train_log.jsonl'}" in r.stderr
    assert [h["step"] for h in _log(run)] == list(range(1, 7)) and (run / "final").is_dir()
    before = _snapshot(run)
    r = ks_here(*args, "--fresh")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line == f"error: {run / 'final'}: --fresh: the run is finished; choose another --out"
    assert _snapshot(run) == before


@pytest.mark.parametrize(
    "tail", ['{"step": 3, "lo', '{"step": 3, "loss": 1.0}\n'], ids=["mid-line", "while saving step 3"]
)
def test_a_run_killed_before_its_first_checkpoint_starts_again(
    base: dict[str, Path], finished: Path, tmp_path: Path, tail: str
) -> None:
    """Killed after step 2 of 6 (first checkpoint at 3), mid-write of its log or after step 3's line (a
    step is logged before its checkpoint is saved), with its first checkpoint half-written: a rerun has
    nothing to resume, loses nothing by starting from step 0, and ends as an uninterrupted run."""
    run = tmp_path / "run"
    T.train(load_spec(base["cfg"], "toy"), run, data=str(base["data"]), stop_after=2, precision="no")
    assert [h["step"] for h in _log(run)] == [1, 2] and not (run / "checkpoints" / "LATEST").exists()
    with open(run / "train_log.jsonl", "a") as fh:
        fh.write(tail)
    (run / "checkpoints" / ".step-000003.tmp" / "model").mkdir(parents=True)
    args = ("train", "--config", base["cfg"], "--data", base["data"], "--precision", "no", "--out")
    assert ks_here(*args, run).returncode == 0
    assert [h["step"] for h in _log(run)] == list(range(1, 7))
    assert (run / "final" / "model.safetensors").read_bytes() == finished.read_bytes()
    assert not list((run / "checkpoints").glob(".step-*"))


def test_a_run_killed_between_publishing_its_first_checkpoint_and_latest_resumes_from_it(
    base: dict[str, Path], finished: Path, tmp_path: Path
) -> None:
    """Killed after its first checkpoint was renamed into place but before LATEST named it (or mid-write of
    LATEST: its temp is there): the rerun resumes from that checkpoint, not from step 0, keeps the log's
    steps once each and ends as an uninterrupted run (the seed-0 SIGKILL of test_kill_anywhere hit this)."""
    run = tmp_path / "run"
    T.train(load_spec(base["cfg"], "toy"), run, data=str(base["data"]), stop_after=3, precision="no")
    ck = run / "checkpoints"
    assert (ck / "LATEST").read_text() == STEP
    (ck / "LATEST").unlink()
    (ck / f".LATEST.{2**22 + 1}.0badc0de.tmp").write_text("step-0")  # a pid past pid_max: its writer is gone
    args = ("train", "--config", base["cfg"], "--data", base["data"], "--precision", "no", "--out")
    r = ks_here(*args, run)
    assert r.returncode == 0, r.stderr
    assert f"resumed at step 3 from {ck}" in r.stderr
    assert [h["step"] for h in _log(run)] == list(range(1, 7))
    assert (run / "final" / "model.safetensors").read_bytes() == finished.read_bytes()
    assert not [p.name for p in ck.iterdir() if p.name.endswith(".tmp")]


def test_a_second_checkpoint_without_latest_is_still_refused(base: dict[str, Path], tmp_path: Path) -> None:
    """Only the first checkpoint can be published without a LATEST; a later one (LATEST deleted by hand)
    is refused, the folder left as it was."""
    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    (run / "checkpoints" / "LATEST").unlink()
    (run / "checkpoints" / STEP).rename(run / "checkpoints" / "step-000006")
    before = _snapshot(run)
    r = ks_here("train", "--config", base["cfg"], "--data", base["data"], "--out", run, "--precision", "no")
    assert r.returncode == 2
    assert "an unfinished run without a checkpoint to resume from" in r.stderr
    assert _snapshot(run) == before


def test_a_tampered_first_checkpoint_without_latest_is_refused_and_not_named(
    base: dict[str, Path], tmp_path: Path
) -> None:
    """The checkpoint a kill left un-named is untrusted like any other: one that does not match its manifest
    is refused (exit 2), and LATEST is not written for it."""
    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    (run / "checkpoints" / "LATEST").unlink()
    log = run / "train_log.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:3]))  # steps 1-3: killed while saving 3
    _flip_a_weight(run / CK)
    before = _snapshot(run)
    r = ks_here("train", "--config", base["cfg"], "--data", base["data"], "--out", run, "--precision", "no")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert (
        line
        == f"error: checkpoint {run / CK}: model/model.safetensors does not match its sha256 in manifest.json"
    )
    assert _snapshot(run) == before and not (run / "checkpoints" / "LATEST").exists()


@pytest.mark.parametrize(
    "log",
    ['{"step": 1}\n{"step": 4}\n', '{"step": 1}\nnot json\n{"step": 2}\n', '{"step": "1"}\n'],
    ids=["a step past the first checkpoint", "a garbled line before the last", "a step not a number"],
)
def test_a_log_that_a_run_before_its_first_checkpoint_cannot_have_written_is_refused(
    base: dict[str, Path], tmp_path: Path, log: str
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_log.jsonl").write_text(log)
    r = ks_here("train", "--config", base["cfg"], "--data", base["data"], "--out", run, "--precision", "no")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert f"{run / 'train_log.jsonl'}: an unfinished run without a checkpoint to resume from" in line
    assert (run / "train_log.jsonl").read_text() == log and sorted(os.listdir(run)) == ["train_log.jsonl"]


def test_an_unknown_precision_is_refused(base: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = ks_here("train", "--config", base["cfg"], "--data", base["data"], "--out", run, "--precision", "fp64")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line == "error: --precision: unknown 'fp64' (known: auto, bf16, fp16, no)"
    assert not run.exists()
    with pytest.raises(InputError, match="precision: unknown 'fp64'"):
        T.pick_precision("fp64")


def test_the_checkpoint_holds_no_pickle_and_resumes_from_its_sealed_files(base: dict[str, Path]) -> None:
    ckpt = base["run"] / CK
    names = sorted(p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*") if p.is_file())
    assert "state.safetensors" in names and "state.json" in names
    assert not [n for n in names if n.endswith((".pt", ".bin", ".pkl"))]
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert set(manifest) == {"format", "step", "config_sha256", "files", "seal"}
    assert manifest["step"] == 3 and set(manifest["files"]) == set(names) - {"manifest.json"}
    assert manifest["files"]["state.json"] == sha256_file(ckpt / "state.json")
