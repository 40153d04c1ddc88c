"""SIGKILL at a random moment (issue 12's fault-injection item): `eval`, `kd-mix` and `train` are killed at a
moment drawn from a seed, between start-up and just past the end of an uninterrupted run, over the
outputs of an earlier run. Then: each output is the earlier run's or the new run's whole (never a mix),
the same command finishes with the bytes of an uninterrupted run, every record once, and no temp file is
left. Seed 0 runs in `make test`; more seeds (KILL_SEEDS) in `make test-slow`. `contextual gen`'s own is
in test_output_paths.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from kimi_student.data.kd_mix import read_logprobs
from tests.support import (
    kill_at_random,
    kill_seeds,
    ks,
    ks_here,
    read_rows,
    serve_json,
    temp_litter,
    took_from,
)

EPOCH = {"SOURCE_DATE_EPOCH": "1790000000"}  # the report's date: runs compare byte for byte


def _timed(
    *args: str | Path, ok: tuple[int, ...] = (0,), env: dict[str, str] | None = None, here: bool = False
) -> float:
    """Run the CLI: as a process of its own (the uninterrupted run whose time bounds the kill), or `here`, in
    this process (the earlier run and the rerun after the kill: no need of a process, and seconds cheaper)."""
    t = time.monotonic()
    r = (ks_here if here else ks)(*args, env=env)
    assert r.returncode in ok, r.stdout + r.stderr
    return time.monotonic() - t


def _bytes(p: Path) -> bytes | None:
    return p.read_bytes() if p.is_file() else None


# ---- eval ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", kill_seeds())
def test_eval_killed_anywhere(seed: int, dataset: dict[str, Path], tmp_path: Path) -> None:
    def args(ds: Path, folder: Path) -> list[str | Path]:
        folder.mkdir(exist_ok=True)
        out, rep = folder / "r.jsonl", folder / "r.json"
        return ["eval", "--runner", "verification_only", "--in", ds, "--out", out, "--report", rep]

    run = tmp_path / "run"
    took = _timed(*args(dataset["final"], tmp_path / "ref"), env=EPOCH)
    new = {n: _bytes(tmp_path / "ref" / n) for n in ("r.jsonl", "r.json")}
    _timed(
        *args(dataset["gen"], run), ok=(1,), env=EPOCH, here=True
    )  # an earlier run's outputs (gates inconclusive)
    old = {n: _bytes(run / n) for n in ("r.jsonl", "r.json")}
    kill_at_random(args(dataset["final"], run), seed, took, env=EPOCH)
    for n in new:  # each file whole, the old or the new (results and report are not yet one pair)
        assert _bytes(run / n) in (old[n], new[n]), n
    _timed(*args(dataset["final"], run), env=EPOCH, here=True)
    assert {n: _bytes(run / n) for n in new} == new  # every item once, in order: the uninterrupted bytes
    assert not (run / "r.jsonl.parts").exists() and temp_litter(run) == []


# ---- kd-mix ----------------------------------------------------------------------------------------------

DIGITS = "0123456789"


def _digit(messages: list[dict[str, Any]]) -> str:
    """The token the fake teacher puts first in its top-k for these messages (a record paired with another
    run's shards shows)."""
    return DIGITS[sum(str(messages[-1]["content"]).encode()) % 10]


def _teacher(body: dict, headers: Any) -> tuple[int, bytes]:
    time.sleep(0.08)  # a teacher takes a while: the run spends time asking, where a kill may land
    d = _digit(body["messages"])
    top = [{"token": d, "logprob": -0.1}, {"token": "hello", "logprob": -2.5}]
    lp = {"content": [{"token": d, "logprob": -0.1, "top_logprobs": top}]}
    choice = {"message": {"role": "assistant", "content": d}, "finish_reason": "stop", "logprobs": lp}
    return 200, json.dumps({"choices": [choice], "usage": {"completion_tokens": 1}}).encode()


def _kd_whole(out: Path) -> bytes | None:
    """The KD file, after checking each record's logprob rows (as a reader finds them) are its own."""
    from kimi_student.tokenizer import load_tokenizer

    if not out.is_file():
        return None
    vocab = load_tokenizer("smollm2").tok.get_vocab()
    for rec in read_rows(out)[1:]:
        assert read_logprobs(out, rec)["topk_ids"][0, 0] == vocab[_digit(rec["messages"])], rec["id"]
    return out.read_bytes()


@pytest.mark.parametrize("seed", kill_seeds())
def test_kd_mix_killed_anywhere(seed: int, tmp_path: Path) -> None:
    def prompts(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"{text} {i}"}) + "\n" for i in range(60)))
        return p

    srv, url = serve_json(_teacher)
    old_p, new_p = prompts("old.jsonl", "name a colour"), prompts("new.jsonl", "name a number")

    def args(p: Path, out: Path) -> list[str | Path]:
        return ["kd-mix", "--teacher", url, "--prompts", p, "--out", out, "--no-system", "--concurrency", 4]

    run = tmp_path / "run" / "kd.jsonl"
    try:
        took = _timed(*args(new_p, tmp_path / "ref" / "kd.jsonl"))
        new = _kd_whole(tmp_path / "ref" / "kd.jsonl")
        _timed(*args(old_p, run), here=True)
        old = _kd_whole(run)
        kill_at_random(args(new_p, run), seed, took)
        assert _kd_whole(run) in (old, new)
        _timed(*args(new_p, run), here=True)
    finally:
        srv.shutdown()
    assert _kd_whole(run) == new
    assert [r["id"] for r in read_rows(run)[1:]] == [f"p{i}" for i in range(60)]  # each record once
    assert temp_litter(run.parent) == []


# ---- train -----------------------------------------------------------------------------------------------


def _log_lines(run: Path) -> list[dict]:
    """The training log's whole lines (a kill may cut the last one), less what counts from the process's
    start (its seconds and tokens: a resumed run counts afresh)."""
    p = run / "train_log.jsonl"
    text = p.read_text() if p.is_file() else ""
    rows = [json.loads(x) for x in text.splitlines(keepends=True) if x.endswith("\n")]
    return [{k: v for k, v in row.items() if k not in ("elapsed_s", "tokens")} for row in rows]


@pytest.mark.parametrize("seed", kill_seeds())
def test_train_killed_anywhere(seed: int, dataset: dict[str, Path], tmp_path: Path) -> None:
    from tests.integration.train.test_train import _config

    cfg = _config(tmp_path, max_steps=6, checkpoint_every=2)
    args = ["train", "--config", cfg, "--data", dataset["final"], "--precision", "no", "--out"]
    # the reference in this process (3 s against 10.5 s for a process, most of it imports); the kill's
    # moment counts from the run folder's first appearance, the same point in the killed process
    took = took_from(tmp_path / "ref", lambda: _timed(*args, tmp_path / "ref", here=True))
    ref_log = _log_lines(tmp_path / "ref")
    ref_final = (tmp_path / "ref" / "final" / "model.safetensors").read_bytes()
    run = tmp_path / "run"
    kill_at_random([*args, run], seed, took, started=run.exists)
    log = _log_lines(run)
    assert log == ref_log[: len(log)]  # steps so far, each once
    if (run / "final").exists():
        assert (run / "final" / "model.safetensors").read_bytes() == ref_final
    _timed(*args, run, here=True)
    assert _log_lines(run) == ref_log  # steps 1..6 once each, the uninterrupted losses exactly
    assert (run / "final" / "model.safetensors").read_bytes() == ref_final
    assert temp_litter(run) == []
