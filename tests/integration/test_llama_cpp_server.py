"""Against llama.cpp's real OpenAI-compatible server (issue 12, "Real servers"): PyPI llama-cpp-python
serving the embedded SmolLM2 GGUF on 127.0.0.1, with an API key it checks, behind a recording proxy. As a
new user would, through the real CLI:

- `kd-mix --teacher http://127.0.0.1:P/v1` with logprobs: exit 0, every prompt answered, every top-k
  entry the server gave maps to a local id (the only -1 are the pads of lists shorter than K), the chosen
  ids decode to the answer's text and each is the server's own top-1 (greedy is greedy: repeat_penalty 1);
- `eval --runner openai_http` with `--tool-protocol text` and `tools`: rows scored, no request refused,
  `tools` sends `tool_choice`; the turn after a tool call (assistant content "", not null) is accepted;
- no file a run wrote holds the key, which is in the environment and which the server checks.

Slow tier; skipped only when .venv-llama is absent (`make test-llama` builds it first: ~15 min once).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_student.backends.openai_client import KEY_ENVS
from kimi_student.data.kd_mix import read_logprobs
from kimi_student.teachers.openai_http import PAD_LOGPROB
from tests.llama_cpp import ABSENT, BUILT, Recorder, llama_server
from tests.support import files_holding, ks, read_rows, write_rows

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not BUILT, reason=ABSENT)]

KEY = "sk-llama-local-7c3e91ab5d"
ENV = {**dict.fromkeys(KEY_ENVS, ""), "KIMI_API_KEY": KEY}
K = 20  # kd-mix's default --top-logprobs
TOKENS = 24
PROMPTS = [
    "Name three primary colours.",
    "Write the word café three times.",  # a top list with "" in it
    "What is the capital of France?",
    "Write one sentence about the sea.",
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with llama_server(api_key=KEY) as url:
        yield url


@pytest.fixture
def proxy(server: str) -> Iterator[Recorder]:
    rec = Recorder(server)
    yield rec
    rec.close()


def test_kd_mix_maps_every_token_and_greedy_is_the_servers_top1(proxy: Recorder, tmp_path: Path) -> None:
    from kimi_student.tokenizer import load_tokenizer

    rows = [{"id": f"p{i}", "prompt": p} for i, p in enumerate(PROMPTS)]
    out = tmp_path / "kd" / "kd.jsonl"
    r = ks(
        "kd-mix", "--teacher", proxy.url, "--prompts", write_rows(tmp_path / "p.jsonl", rows), "--out", out,
        "--max-new-tokens", str(TOKENS), env=ENV,
    )  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    header, *recs = read_rows(out)
    assert header["ok"] == len(PROMPTS) and [x["status"] for x in recs] == ["ok"] * len(PROMPTS)
    sent = [x["request"] for x in proxy.exchanges]
    assert all(b["temperature"] == 0 and b["repeat_penalty"] == 1 and b["top_logprobs"] == K for b in sent)
    assert [x["status"] for x in proxy.exchanges] == [200] * len(PROMPTS)
    answers = {x["request"]["messages"][-1]["content"]: x["response"]["choices"][0] for x in proxy.exchanges}
    tok = load_tokenizer("smollm2").tok
    for rec in recs:
        answer = answers[PROMPTS[int(rec["id"][1:])]]
        content = answer["logprobs"]["content"][:TOKENS]
        lp = read_logprobs(out, rec)
        assert len(content) > 0 and lp["topk_ids"].shape == (len(content), K)
        for pos, ids, lps in zip(content, lp["topk_ids"], lp["topk_logprobs"], strict=True):
            given = [t["token"] for t in pos["top_logprobs"][:K]]
            # every entry the server named maps to an id; -1 pads a short list or stands for "" (a token
            # holding part of a UTF-8 character: the server dropped its bytes), with no mass of its own
            assert [int(i) < 0 for i in ids] == [t == "" for t in given] + [True] * (K - len(given))
            assert all(lps[ids < 0] <= PAD_LOGPROB)
        assert lp["token_ids"].tolist() == lp["topk_ids"][:, 0].tolist()  # the chosen token is the top-1
        assert tok.decode(lp["token_ids"].tolist()) == answer["message"]["content"]
        assert rec["text"] == answer["message"]["content"]
    assert files_holding(tmp_path / "kd", KEY) == []
    assert KEY not in r.stdout + r.stderr


def _eval(dataset: dict, tmp: Path, url: str, protocol: str, n: int) -> tuple:
    subset = write_rows(tmp / "d.jsonl", read_rows(dataset["final"])[: n + 1])  # + header
    fixtures = dataset["gen"].parent / (dataset["gen"].name + ".fixtures")
    out = tmp / protocol
    r = ks(
        "eval", "--runner", "openai_http", "--url", url, "--model", "smollm2", "--in", subset,
        "--out", out / "r.jsonl", "--report", out / "r.json", "--fixtures", fixtures,
        "--fixtures", "kimi_student/tools/fixtures", "--tool-protocol", protocol, "--max-turns", "2",
        "--max-new-tokens", "64", "--retries", "0", env=ENV,
    )  # fmt: skip
    return r, read_rows(out / "r.jsonl"), json.loads((out / "r.json").read_text())


@pytest.mark.parametrize("protocol", ["text", "tools"])
def test_eval_through_the_tool_loop(protocol: str, proxy: Recorder, dataset: dict, tmp_path: Path) -> None:
    r, rows, report = _eval(dataset, tmp_path, proxy.url, protocol, 4)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr  # 1: a gate failed
    assert len(rows) == 4 and all(row["error"] is None for row in rows), [row["error"] for row in rows]
    assert report["header"]["decoding"]["tool_protocol"] == protocol
    assert [x["status"] for x in proxy.exchanges] == [200] * len(proxy.exchanges)
    bodies = [x["request"] for x in proxy.exchanges]
    if protocol == "tools":
        assert all(b["tool_choice"] == "auto" and b["tools"] and "stop" not in b for b in bodies)
    else:
        assert all("tools" not in b and b["stop"] == ["</tool_call>"] for b in bodies)
    assert files_holding(tmp_path / protocol, KEY) == [] and KEY not in r.stdout + r.stderr


def test_the_turn_after_a_tool_call_is_accepted(proxy: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """SmolLM2 under the server's default chat format writes no tool call, so the eval above never gets a
    second turn: the runner's own code sends one here (a call, its result), as the tool loop would."""
    from kimi_student.eval.runners.openai_http import OpenAIGenerator
    from tests.llama_cpp_record import TOOL_CONVERSATION

    monkeypatch.setenv("KIMI_API_KEY", KEY)
    gen = OpenAIGenerator(proxy.url, "smollm2", max_new_tokens=16, protocol="tools", max_retries=0)
    try:
        (g,) = gen.generate([TOOL_CONVERSATION])
    finally:
        gen.close()
    assert g.error is None and g.finish in ("stop", "length"), g.error
    (x,) = proxy.exchanges
    assert x["status"] == 200 and x["request"]["tool_choice"] == "auto"
    assert x["request"]["messages"][1]["content"] == "" and x["request"]["messages"][1]["tool_calls"]
