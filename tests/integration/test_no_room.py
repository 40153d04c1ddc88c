"""A write that runs out of room (disk full, file too large) is one line naming the output, exit 2, the
previous output intact and no temp left (review reliability.md D4, D13: an OSError traceback, a fixtures
folder without its dataset). The limit is RLIMIT_FSIZE in the child (EFBIG), the review's emulation."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import pytest

from tests.support import ks, ks_limited, serve_json, temp_litter

EPOCH = {"SOURCE_DATE_EPOCH": "1790000000"}  # the report's date: reruns compare byte for byte


def _one_line_no_room(r: Any, path: Path, last: bool = False) -> None:
    """The run's stderr is that one line (with `last`: ends with it, after transformers' save bar)."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert (r.stderr.strip().splitlines()[-1] if last else r.stderr.strip()) == (
        f"error: {path}: cannot write it: File too large (disk full or past the file-size limit)"
    ), r.stderr


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_gen_out_of_room_keeps_the_old_dataset_and_its_fixtures(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    assert ks("contextual", "gen", "--n", 30, "--seed", 1, "--out", out).returncode == 0
    before = _files(tmp_path)
    r = ks_limited(out.stat().st_size // 2, "contextual", "gen", "--n", 30, "--seed", 2, "--out", out)
    _one_line_no_room(r, out)
    assert _files(tmp_path) == before and temp_litter(tmp_path) == []


def test_eval_out_of_room_keeps_the_old_results(small: Path, tmp_path: Path) -> None:
    out, rep = tmp_path / "r.jsonl", tmp_path / "r.json"
    args = ("eval", "--runner", "verification_only", "--in", small, "--out", out, "--report", rep)
    first = ks(
        *args, env=EPOCH
    )  # exit 1: the gates are inconclusive on a dataset not extracted; it writes both
    assert first.returncode in (0, 1) and out.is_file() and rep.is_file(), first.stderr
    before = _files(tmp_path)
    r = ks_limited(out.stat().st_size // 2, *args, env=EPOCH)
    _one_line_no_room(r, out.with_name("r.jsonl.parts") / "a-001-w000.jsonl")  # the items scored so far
    assert {k: v for k, v in _files(tmp_path).items() if ".parts" not in k} == before
    assert temp_litter(tmp_path) == []
    r = ks(*args, env=EPOCH)  # room again: the same command resumes and finishes
    assert r.returncode == first.returncode and _files(tmp_path) == before, r.stderr


def _answer(body: dict, headers: Any) -> tuple[int, bytes]:
    top = [{"token": "hello", "logprob": -0.1}, {"token": "hi", "logprob": -2.5}]
    msg = {"role": "assistant", "content": "hello"}
    lp = {"content": [{"token": "hello", "logprob": -0.1, "top_logprobs": top}]}
    choice = {"message": msg, "finish_reason": "stop", "logprobs": lp}
    return 200, json.dumps({"choices": [choice], "usage": {"completion_tokens": 1}}).encode()


def test_kd_mix_out_of_room_keeps_the_old_pair(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"colour {i}"}) + "\n" for i in range(40))
    )
    srv, url = serve_json(_answer)
    out = tmp_path / "kd" / "kd.jsonl"
    args = ("kd-mix", "--teacher", url, "--prompts", prompts, "--out", out, "--no-system", "--max-retries", 0)
    try:
        assert ks(*args, "--limit", 2).returncode == 0
        before = _files(out.parent)
        r = ks_limited(out.stat().st_size, *args)  # the cache's answers fit, the KD file does not
        _one_line_no_room(r, out)
        after = _files(out.parent)
        assert {k: v for k, v in after.items() if ".cache" not in k} == {
            k: v for k, v in before.items() if ".cache" not in k
        }
        assert len([k for k in after if k.startswith("kd.jsonl.cache/")]) == 40  # every answer kept
        assert temp_litter(out.parent) == []
        r = ks(*args)
        assert r.returncode == 0 and "40 from cache" in r.stdout, r.stdout + r.stderr
    finally:
        srv.shutdown()


def test_train_out_of_room_leaves_no_half_final_folder(tmp_path: Path) -> None:
    """In process (a training run's start-up costs seconds): the soft file-size limit of this process is
    lowered around the final save alone. safetensors says EFBIG in a message, not an OSError."""
    from kimi_student.backends.embedded import smollm2_folder
    from kimi_student.models.student import build_student, load_spec
    from kimi_student.outputs import NoRoomError
    from kimi_student.train.checkpoint import RunPaths, save_final

    model, paths = build_student(load_spec("worker", "toy"), seed=0), RunPaths(tmp_path / "run")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))  # the toy's weights are 12 MB
    try:
        with pytest.raises(NoRoomError) as e:
            save_final(paths, model, smollm2_folder())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert (
        str(e.value)
        == f"{paths.final}: cannot write it: File too large (disk full or past the file-size limit)"
    )
    assert not paths.final.exists() and temp_litter(tmp_path) == []
