"""The KD mix end to end: real teachers, the cache, kill-and-resume, and HTTP faults."""

from __future__ import annotations

import json
import subprocess
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

from kimi_student.backends.openai_client import KEY_ENVS
from kimi_student.data.kd_mix import read_logprobs
from kimi_student.recipes.serve import transformers_serve
from tests.support import (
    KS,
    dead_pid,
    files_holding,
    kill_when,
    ks,
    ks_here,
    read_rows,
    send_json,
    serve,
    temp_litter,
)

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("prompts") / "p.jsonl"
    rows = [{"id": f"p{i}", "prompt": f"Name a colour number {i}."} for i in range(12)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_hf_teacher_stores_text_and_topk_and_reruns_from_cache(
    toy_checkpoint: Path, prompts: Path, tmp_path: Path
) -> None:
    out = tmp_path / "kd.jsonl"
    args = (
        "kd-mix",
        "--teacher",
        f"hf:{toy_checkpoint}",
        "--prompts",
        prompts,
        "--out",
        out,
        "--limit",
        5,
        "--max-new-tokens",
        8,
        "--top-logprobs",
        5,
        "--no-system",
    )
    r = ks_here(*args)  # in this process, as the rerun: test_kill_anywhere runs kd-mix as a process
    assert r.returncode == 0, r.stderr
    first = out.read_bytes()
    rows = read_rows(out)
    header, recs = rows[0], rows[1:]
    assert header["ok"] == 5 and "0 from cache" in r.stdout and header["logprob_k"] == 5
    assert header["logprob_bytes_per_token"] == 5 * 4 + 5 * 2 + 4  # int32 ids + fp16 logprobs + token id
    assert [r["id"] for r in recs] == [f"p{i}" for i in range(5)]
    lp = read_logprobs(out, recs[0])
    assert lp["topk_ids"].shape == (8, 5) and lp["topk_logprobs"].dtype == np.float16
    assert np.all(np.diff(lp["topk_logprobs"].astype(np.float32), axis=1) <= 1e-3)  # sorted, best first
    assert np.all(np.exp(lp["topk_logprobs"].astype(np.float32)).sum(1) <= 1.001)
    r = ks_here(*args)  # the rerun
    assert r.returncode == 0 and "5 from cache" in r.stdout
    assert out.read_bytes() == first  # a rerun changes nothing


# A second proof, in `make test-slow`: test_kill_anywhere.py::test_kd_mix_killed_anywhere kills kd-mix (at a
# random moment, over an earlier run's outputs) and proves every record once in make test.
@pytest.mark.extra
def test_kill_and_resume_loses_and_duplicates_nothing(prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "kd.jsonl"
    cache = tmp_path / "kd.jsonl.cache"
    cmd = [
        *KS,
        "kd-mix",
        "--teacher",
        "smollm2",
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--limit",
        "6",
        "--max-new-tokens",
        "6",
        "--top-logprobs",
        "4",
        "--no-system",
    ]
    kill_when(cmd[len(KS) :], lambda: len(list(cache.glob("*/*.json"))) >= 2)
    answered = len(list(cache.glob("*/*.json")))
    assert 2 <= answered < 6 and not out.exists()
    # What a kill while the shards were assembled leaves (a window too short to hit by timing).
    (tmp_path / f".kd.jsonl.logprobs.{dead_pid()}.0badf00d.tmp").mkdir()
    r = ks_here(*cmd[len(KS) :])  # the resume in this process: the kill above is the process's part
    assert r.returncode == 0, r.stderr
    rows = read_rows(out)
    ids = [x["id"] for x in rows[1:]]
    assert ids == [f"p{i}" for i in range(6)]  # every record, once, in prompt order
    assert f"({answered} from cache)" in r.stdout and rows[0]["ok"] == 6
    assert len(list(cache.glob("*/*.json"))) == 6
    assert temp_litter(tmp_path) == []


# ---- HTTP faults, from a tiny server of the test's own ---------------------------------------------------


def _ok_body(text: str = "hello") -> bytes:
    return json.dumps(
        {
            "choices": [
                {
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": {
                        "content": [
                            {
                                "token": "hello",
                                "logprob": -0.1,
                                "top_logprobs": [
                                    {"token": "hello", "logprob": -0.1},
                                    {"token": "hi", "logprob": -2.5},
                                ],
                            }
                        ]
                    },
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }
    ).encode()


class FaultServer:
    """Answers each request with the next scripted fault; then OK."""

    def __init__(self, script: list[str]):
        self.script, self.seen, self.auth = list(script), [], []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.seen.append((time.monotonic(), body))
                outer.auth.append(self.headers.get("Authorization"))
                step = outer.script.pop(0) if outer.script else "ok"
                if step == "429":
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.end_headers()
                elif step in ("500", "400"):
                    self.send_response(int(step))
                    self.end_headers()
                    self.wfile.write(b"boom")
                elif step == "timeout":
                    time.sleep(1.5)
                    self._send(_ok_body("late"))
                elif step == "truncated":
                    full = _ok_body()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(full)))
                    self.end_headers()
                    self.wfile.write(full[: len(full) // 2])
                    self.wfile.flush()
                    self.connection.close()
                elif step == "empty":
                    self._send(json.dumps({"choices": []}).encode())
                else:
                    self._send(_ok_body())

            def _send(self, data: bytes) -> None:
                send_json(self, data)

        self.httpd, self.url = serve(H)

    def close(self) -> None:
        self.httpd.shutdown()


def _http_run(
    script: list[str], tmp: Path, prompts: Path, *extra: str, cli=ks_here
) -> tuple[subprocess.CompletedProcess, FaultServer]:
    """`kd-mix --limit 1` against a `FaultServer` playing `script`, through `cli`: the real CLI, in this
    process unless `ks` is given (a second Python and torch take seconds a run)."""
    srv = FaultServer(script)
    try:
        r = cli(
            "kd-mix",
            "--teacher",
            srv.url,
            "--prompts",
            prompts,
            "--out",
            tmp / "kd.jsonl",
            "--limit",
            1,
            "--concurrency",
            1,
            "--timeout",
            1.0,
            "--no-system",
            *extra,
            env={"KIMI_STUDENT_API_KEY": "sk-test-secret-value-123456"},
        )
    finally:
        srv.close()
    return r, srv


@pytest.mark.parametrize("fault", ["429", "500", "timeout", "truncated", "empty"])
def test_http_teacher_retries_each_fault_then_succeeds(fault: str, prompts: Path, tmp_path: Path) -> None:
    r, srv = _http_run([fault], tmp_path, prompts, cli=ks if fault == "429" else ks_here)  # one in a process
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(srv.seen) == 2
    rows = read_rows(tmp_path / "kd.jsonl")
    assert rows[1]["status"] == "ok" and rows[1]["text"] in ("hello", "late")
    if fault == "429":
        assert srv.seen[1][0] - srv.seen[0][0] >= 0.95  # Retry-After: 1 honoured
    body = srv.seen[-1][1]
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["messages"][-1]["role"] == "user"
    assert srv.auth[0] == "Bearer sk-test-secret-value-123456"
    assert "sk-test-secret" not in r.stdout + r.stderr + (tmp_path / "kd.jsonl").read_text()


KEYS = {e: f"sk-fake-{e.lower()}-7f3a9c" for e in (*KEY_ENVS, "MY_TEACHER_KEY")}


@pytest.mark.parametrize(
    ("env", "extra", "used"),
    [
        pytest.param(KEY_ENVS, (), "KIMI_STUDENT_API_KEY", id="first-of-all-four"),
        pytest.param(KEY_ENVS[1:], (), "KIMI_API_KEY", id="kimi"),
        pytest.param(KEY_ENVS[2:], (), "MOONSHOT_API_KEY", id="moonshot"),
        pytest.param(KEY_ENVS[3:], ("--max-retries", 1), "OPENAI_API_KEY", id="openai-with-failures"),
        pytest.param(KEY_ENVS, ("--api-key-env", "MY_TEACHER_KEY"), "MY_TEACHER_KEY", id="api-key-env"),
    ],
)
def test_the_api_key_is_sent_and_never_written(
    env: tuple[str, ...], extra: tuple, used: str, prompts: Path, tmp_path: Path
) -> None:
    """README: the key is read from KIMI_STUDENT_API_KEY, KIMI_API_KEY, MOONSHOT_API_KEY or OPENAI_API_KEY (or
    --api-key-env) and never written anywhere: not in the KD file, its cache, its logprob shards, the output.
    The failing variant writes failed records (HTTP 500 twice, then a 400) as well as cached answers."""
    keys = {e: KEYS[e] for e in (*env, "MY_TEACHER_KEY")}
    env_vars = {e: keys.get(e, "") for e in (*KEY_ENVS, "MY_TEACHER_KEY")}  # unset the others
    script = ["500", "500", "400"] if "--max-retries" in extra else []
    srv = FaultServer(script)
    cli = ks if used == "KIMI_STUDENT_API_KEY" else ks_here  # the first case across the process boundary
    try:
        r = cli(
            "kd-mix", "--teacher", srv.url, "--prompts", prompts, "--out", tmp_path / "kd.jsonl", "--limit", 3,
            "--concurrency", 1, "--timeout", 2.0, "--no-system", *extra, env=env_vars,
        )  # fmt: skip
    finally:
        srv.close()
    assert r.returncode == (1 if script else 0), r.stderr
    assert set(srv.auth) == {f"Bearer {keys[used]}"}
    assert list(tmp_path.glob("kd.jsonl.cache/*/*.json")) and list(tmp_path.glob("kd.jsonl.logprobs/*.npz"))
    for key in keys.values():
        assert files_holding(tmp_path, key) == [] and key not in r.stdout + r.stderr


def test_http_logprobs_map_to_local_token_ids(prompts: Path, tmp_path: Path) -> None:
    from kimi_student.tokenizer import load_tokenizer

    r, _ = _http_run([], tmp_path, prompts)
    assert r.returncode == 0, r.stderr
    rec = read_rows(tmp_path / "kd.jsonl")[1]
    lp = read_logprobs(tmp_path / "kd.jsonl", rec)
    vocab = load_tokenizer("smollm2").tok.get_vocab()
    # the server gave 2 of the 20 asked for: padded to K = 20 (id -1), so that every record has one width
    assert lp["topk_ids"].tolist() == [[vocab["hello"], vocab["hi"]] + [-1] * 18]
    assert rec["logprobs"]["temperature"] == 1.0


def test_http_permanent_failure_is_recorded_not_dropped(prompts: Path, tmp_path: Path) -> None:
    r, srv = _http_run(["500"] * 10, tmp_path, prompts, "--max-retries", 2)
    assert r.returncode == 1 and len(srv.seen) == 3
    rows = read_rows(tmp_path / "kd.jsonl")
    assert rows[0]["failed"] == 1 and rows[1]["status"] == "failed" and "HTTP 500" in rows[1]["error"]
    r, srv = _http_run(["400"], tmp_path, prompts)  # a client error is not retried
    assert r.returncode == 1 and len(srv.seen) == 1


def test_http_teacher_against_transformers_serve(toy_checkpoint: Path, prompts: Path, tmp_path: Path) -> None:
    """The real OpenAI-compatible server of transformers, on loopback, serving a local checkpoint."""
    with transformers_serve(toy_checkpoint) as url:
        out = tmp_path / "kd.jsonl"
        r = ks_here(  # the server is the real part; kd-mix runs in this process
            "kd-mix",
            "--teacher",
            url,
            "--model",
            str(toy_checkpoint),
            "--prompts",
            prompts,
            "--out",
            out,
            "--limit",
            3,
            "--max-new-tokens",
            8,
            "--concurrency",
            2,
            "--no-system",
        )
        assert r.returncode == 0, r.stdout + r.stderr + out.read_text()
        rows = read_rows(out)
        assert rows[0]["ok"] == 3 and all(isinstance(x["text"], str) for x in rows[1:])
        assert rows[0]["teacher"].startswith(f"http:{url.removeprefix('http://')}/")
