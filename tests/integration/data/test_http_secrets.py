"""The HTTP paths through the real CLI (issue 12; review reliability.md D8, D9, "Real servers"), against
fake servers on 127.0.0.1:

- a server that echoes the API key (and the URL's password) in 401 and 200 bodies: no file under the
  run's output folder holds either, for `eval --runner openai_http` and for `kd-mix`;
- a reply recorded from llama.cpp's server (tests/data/llama_cpp/, replayed: a top_logprobs list shorter
  than asked, tokens as decoded text, "" entries): kd-mix stores them as padded, byte-level ids;
- malformed 200 bodies and oversize replies: failures with a reason, never `status: ok`, never a stall.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kimi_student.backends.openai_client import KEY_ENVS
from kimi_student.data.kd_mix import read_logprobs
from tests.support import files_holding, ks, ks_here, read_rows, serve_json, write_rows

pytestmark = [pytest.mark.slow]

KEY = "sk-echo-me-4b1d9e77c2"
PASSWORD = "SECRETPASS123"
ENV = {**dict.fromkeys(KEY_ENVS, ""), "KIMI_API_KEY": KEY}


def _lp(token: str, logprob: float) -> dict[str, Any]:
    return {"id": 0, "token": token, "bytes": list(token.encode()), "logprob": logprob}


def llama_cpp_logprobs(text_tokens: list[str]) -> dict[str, Any]:
    """What llama.cpp's server answers for logprobs: decoded token text with its bytes, and top lists of
    unequal length (it merges entries whose token text is the same)."""
    content = []
    for n, tok in enumerate(text_tokens):
        tops = [_lp(tok, -0.1), _lp(" a", -2.0), _lp("\n", -3.5)][: 1 + n % 3]
        content.append({**_lp(tok, -0.1), "top_logprobs": tops})
    return {"content": content}


class Server:
    """Answers each request with `answer(request body, Authorization header)` -> (status, JSON bytes)."""

    def __init__(self, answer: Any) -> None:
        self.bodies: list[dict[str, Any]] = []

        def reply(body: dict[str, Any], headers: Any) -> tuple[int, bytes]:
            self.bodies.append(body)
            return answer(body, headers.get("Authorization") or "")

        self.httpd, root = serve_json(reply)
        self.url = root.replace("http://", f"http://apiuser:{PASSWORD}@") + "/v1"

    def close(self) -> None:
        self.httpd.shutdown()


def echo(body: dict[str, Any], auth: str) -> tuple[int, bytes]:
    """401 for half the conversations, naming the key and the password; 200 saying them for the rest."""
    said = f"key {KEY}, header {auth}, password {PASSWORD}, url http://apiuser:{PASSWORD}@h/v1"
    if hashlib.sha256(body["messages"][1]["content"].encode()).digest()[0] % 2:
        return 401, json.dumps({"error": {"message": f"invalid api key: {said}"}}).encode()
    msg = {"role": "assistant", "content": f"Integration: {said}."}
    logprobs = llama_cpp_logprobs(["Integration", ":", f" {KEY}"])
    return 200, json.dumps(
        {"choices": [{"message": msg, "finish_reason": "stop", "logprobs": logprobs}]}
    ).encode()


def _eval(dataset: dict, tmp: Path, url: str, n: int, *extra: str) -> Any:
    subset = tmp / "d.jsonl"
    write_rows(subset, read_rows(dataset["final"])[: n + 1])
    fixtures = dataset["gen"].parent / (dataset["gen"].name + ".fixtures")
    return ks(
        "eval", "--runner", "openai_http", "--url", url, "--model", "m", "--in", subset,
        "--out", tmp / "out" / "r.jsonl", "--report", tmp / "out" / "r.json", "--fixtures", fixtures,
        "--fixtures", "kimi_student/tools/fixtures", "--retries", "0", "--max-turns", "2", *extra, env=ENV,
    )  # fmt: skip


def _kd(prompts: Path, tmp: Path, url: str, *extra: str, cli: Any = ks) -> Any:
    """`kd-mix` against the test's server; `cli=ks_here` runs it in this process (for the malformed
    answers: the key test below keeps its own process)."""
    return cli(
        "kd-mix", "--teacher", url, "--prompts", prompts, "--out", tmp / "kd" / "kd.jsonl",
        "--max-retries", "0", "--timeout", "10", "--top-logprobs", "3", *extra, env=ENV,
    )  # fmt: skip


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    return write_rows(
        tmp_path / "p.jsonl", [{"id": f"p{i}", "prompt": f"Name colour {i}."} for i in range(8)]
    )


def test_no_file_of_an_http_run_holds_the_key_or_the_url_password(
    dataset: dict, prompts: Path, tmp_path: Path
) -> None:
    srv = Server(echo)
    try:
        ev = _eval(dataset, tmp_path, srv.url, 12)  # the first 12 items: both answers of `echo` occur
        kd = _kd(prompts, tmp_path, srv.url)
    finally:
        srv.close()
    assert ev.returncode == 1 and "Traceback" not in ev.stderr, ev.stderr
    assert kd.returncode == 1 and "Traceback" not in kd.stderr, kd.stderr
    rows = read_rows(tmp_path / "out" / "r.jsonl")
    assert any(r["error"] and "HTTP 401: " in r["error"] for r in rows)  # the server's message is kept
    assert any("[REDACTED]" in r["output"] for r in rows)
    recs = read_rows(tmp_path / "kd" / "kd.jsonl")
    assert {r["status"] for r in recs[1:]} == {"ok", "failed"}
    assert recs[0]["teacher"] == f"http:{srv.url.split('@')[1].removesuffix('/v1')}/default"
    assert list((tmp_path / "kd").glob("kd.jsonl.cache/*/*.json"))
    for secret in (KEY, PASSWORD):
        assert files_holding(tmp_path / "out", secret) == []
        assert files_holding(tmp_path / "kd", secret) == []
        assert secret not in ev.stdout + ev.stderr + kd.stdout + kd.stderr


def test_kd_mix_stores_llama_cpp_logprobs_as_padded_byte_level_ids(prompts: Path, tmp_path: Path) -> None:
    """llama.cpp's recorded reply (tests/data/llama_cpp/kd_logprobs.json) replayed for every prompt: tokens
    as decoded text, a top list shorter than asked, "" entries. kd-mix exits 0 (it crashed on the unequal
    lists) and stores every named token as its byte-level id, a pad (-1, PAD_LOGPROB) for the rest."""
    from kimi_student.teachers.openai_http import PAD_LOGPROB
    from kimi_student.tokenizer import load_tokenizer
    from tests.llama_cpp import recorded

    rec = recorded("kd_logprobs")
    k, content = rec["request"]["top_logprobs"], rec["response"]["choices"][0]["logprobs"]["content"]
    srv = Server(lambda body, auth: (200, json.dumps(rec["response"]).encode()))
    try:
        r = _kd(prompts, tmp_path, srv.url, "--limit", "2", "--top-logprobs", str(k), cli=ks_here)
    finally:
        srv.close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert srv.bodies[0]["repeat_penalty"] == 1.0 and srv.bodies[0]["temperature"] == 0.0
    vocab = load_tokenizer("smollm2").tok.get_vocab()
    out = read_rows(tmp_path / "kd" / "kd.jsonl")[1]
    lp = read_logprobs(tmp_path / "kd" / "kd.jsonl", out)
    assert lp["topk_ids"].shape == (len(content), k)
    assert vocab["ĠFrench"] in lp["token_ids"].tolist()
    given = [[t["token"] for t in pos["top_logprobs"]] for pos in content]
    assert [[int(i) < 0 for i in row] for row in lp["topk_ids"]] == [
        [t == "" for t in g] + [True] * (k - len(g)) for g in given
    ]
    assert np.all(lp["topk_logprobs"][lp["topk_ids"] < 0] <= PAD_LOGPROB)


@pytest.mark.parametrize(
    "content",
    [[{"type": "text", "text": "hi"}], 5, "a\ud800b"],
    ids=["list", "number", "lone-surrogate"],
)
def test_kd_mix_records_a_malformed_answer_as_failed(content: Any, prompts: Path, tmp_path: Path) -> None:
    def answer(body: dict[str, Any], auth: str) -> tuple[int, bytes]:
        return 200, json.dumps(
            {"choices": [{"message": {"content": content}, "finish_reason": "stop"}]}
        ).encode()

    srv = Server(answer)
    try:
        r = _kd(prompts, tmp_path, srv.url, "--limit", "2", "--max-retries", "1", cli=ks_here)
    finally:
        srv.close()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    recs = read_rows(tmp_path / "kd" / "kd.jsonl")
    assert [x["status"] for x in recs[1:]] == ["failed", "failed"] and len(srv.bodies) == 4
    assert all("malformed response" in x["error"] for x in recs[1:])


def test_eval_against_a_server_that_ignores_max_tokens_ends_quickly(dataset: dict, tmp_path: Path) -> None:
    """One item's reply is 10 MB (over the 8 MiB cap): an error row; the other's text is 1 MB: cut to what
    max_new_tokens can hold."""

    def answer(body: dict[str, Any], auth: str) -> tuple[int, bytes]:
        big = hashlib.sha256(body["messages"][1]["content"].encode()).digest()[0] % 2
        msg = {"role": "assistant", "content": "Integration: " + "word " * (2_000_000 if big else 200_000)}
        return 200, json.dumps({"choices": [{"message": msg, "finish_reason": "stop"}]}).encode()

    srv = Server(answer)
    t0 = time.monotonic()
    try:
        r = _eval(dataset, tmp_path, srv.url, 12, "--max-new-tokens", "32")  # both replies occur
    finally:
        srv.close()
    assert r.returncode == 1 and time.monotonic() - t0 < 90, r.stderr
    rows = read_rows(tmp_path / "out" / "r.jsonl")
    over = [row for row in rows if row["error"] and "over 8388608 bytes" in row["error"]]
    cut = [row for row in rows if not row["error"]]
    assert over and cut and all(len(row["output"]) <= 32 * 64 for row in cut)
