"""A model runner (openai_http against a scripted loopback server) killed mid-run and resumed: each item is
scored exactly once, the result is the uninterrupted run's bytes, a restart with other runner options is
refused, `--fresh` starts over, and the API key reaches the server but no file the runs wrote."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from kimi_student.backends.openai_client import KEY_ENVS
from kimi_student.eval.resume import _read_part
from tests.support import files_holding, kill_when, ks, ks_here, read_rows, serve_json, write_rows

pytestmark = [pytest.mark.slow]

KEY = "sk-fake-eval-runner-5d21e8b0"
ENV = {**dict.fromkeys(KEY_ENVS, ""), "OPENAI_API_KEY": KEY, "SOURCE_DATE_EPOCH": "1700000000"}
N_ITEMS = 40
CHUNK = 4  # 4 x max(--batch-size 1, --concurrency 1)


class SlowServer:
    """Answers every chat completion with one integration sentence after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay, self.auth, self.users = delay, [], []

        def reply(body: dict, headers: Any) -> tuple[int, bytes]:
            self.auth.append(headers.get("Authorization"))
            self.users.append(body["messages"][-1]["content"])
            time.sleep(self.delay)
            msg = {"role": "assistant", "content": "Integration: nothing was found."}
            return 200, json.dumps({"choices": [{"message": msg, "finish_reason": "stop"}]}).encode()

        self.httpd, root = serve_json(reply)
        self.url = f"{root}/v1"

    def close(self) -> None:
        self.httpd.shutdown()


def _args(dataset: dict, tmp: Path, url: str, name: str, *extra: str) -> list[str]:
    subset = tmp / "d.jsonl"
    if not subset.exists():
        write_rows(subset, read_rows(dataset["final"])[: N_ITEMS + 1])  # + header
    fixtures = dataset["gen"].parent / (dataset["gen"].name + ".fixtures")
    return [
        "eval", "--runner", "openai_http", "--url", url, "--model", "remote-model", "--in", str(subset),
        "--out", str(tmp / f"{name}.jsonl"), "--report", str(tmp / f"{name}.json"),
        "--fixtures", str(fixtures), "--fixtures", "kimi_student/tools/fixtures",
        "--batch-size", "1", "--concurrency", "1", "--max-turns", "1", *extra,
    ]  # fmt: skip


def _part_rows(parts: Path) -> list[dict]:
    """The part files' rows as a resume reads them (a last line without its newline, one the runner is still
    writing, is not a row yet)."""
    return [r for p in sorted(parts.glob("*.jsonl")) for _, r in _read_part(p)[1] if "id" in r]


def test_a_killed_model_runner_resumes_each_item_once_and_never_writes_the_key(
    dataset: dict, tmp_path: Path
) -> None:
    srv = SlowServer(0.0)  # one server, one URL: the URL is part of the runner's options and fingerprint
    try:
        _killed_and_resumed(dataset, tmp_path, srv)
    finally:
        srv.close()
    assert files_holding(tmp_path, KEY) == []
    assert set(srv.auth) == {f"Bearer {KEY}"}


def _killed_and_resumed(dataset: dict, tmp_path: Path, srv: SlowServer) -> None:
    r = ks_here(*_args(dataset, tmp_path, srv.url, "ref"), env=ENV)  # in-process; the kills below are not
    assert r.returncode in (0, 1) and (tmp_path / "ref.json").is_file(), r.stderr
    assert len(srv.users) == N_ITEMS

    srv.delay = 0.05
    parts = tmp_path / "run.jsonl.parts"
    kill_when(_args(dataset, tmp_path, srv.url, "run"), lambda: len(_part_rows(parts)) >= 2 * CHUNK, ENV, 120)
    srv.delay = 0.0
    kept = {row["id"] for row in _part_rows(parts)}
    assert 2 * CHUNK <= len(kept) < N_ITEMS and not (tmp_path / "run.json").exists()
    assert len(kept) % CHUNK == 0  # rows are appended a chunk of conversations at a time

    # other runner options: refused before any request, the unfinished run kept
    asked = len(srv.users)
    r = ks_here(*_args(dataset, tmp_path, srv.url, "run", "--max-turns", "2"), env=ENV)
    assert r.returncode == 2 and "unfinished run with other inputs (runner_options differ)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and len(srv.users) == asked
    assert {row["id"] for row in _part_rows(parts)} == kept

    r = ks(*_args(dataset, tmp_path, srv.url, "run"), env=ENV)
    assert r.returncode in (0, 1) and "resuming" in r.stdout + r.stderr, r.stderr
    assert len(srv.users) - asked == N_ITEMS - len(kept)  # nothing asked twice
    assert not parts.exists()
    ids = [row["id"] for row in read_rows(tmp_path / "run.jsonl") if "id" in row]
    assert len(ids) == len(set(ids)) == N_ITEMS
    assert (tmp_path / "run.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    ref = json.loads((tmp_path / "ref.json").read_text())
    got = json.loads((tmp_path / "run.json").read_text())
    assert {**got, "results_path": None} == {**ref, "results_path": None}

    # --fresh through the CLI, after another kill: other options start over instead of being refused
    srv.delay = 0.05
    run2_parts = tmp_path / "run2.jsonl.parts"
    kill_when(
        _args(dataset, tmp_path, srv.url, "run2"), lambda: len(_part_rows(run2_parts)) >= CHUNK, ENV, 120
    )
    srv.delay, asked = 0.0, len(srv.users)
    r = ks(*_args(dataset, tmp_path, srv.url, "run2", "--max-turns", "2", "--fresh"), env=ENV)
    assert r.returncode in (0, 1) and len(srv.users) - asked == N_ITEMS, r.stderr
    assert not (tmp_path / "run2.jsonl.parts").exists()
