"""Issue 12 (review reliability.md D8, D9, D18 and "Real servers"), in process: malformed 200 bodies are
retried and then an error (never a crash, never an answer), bodies are capped, secrets are redacted from
everything a server says, an unset --api-key-env is refused, and llama.cpp's reply shapes (unequal
top_logprobs lists, decoded token text) map to local ids. The HTTP paths through the real CLI are in
tests/integration/data/test_http_secrets.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from kimi_student.backends.openai_client import (
    GREEDY_SAMPLING,
    ChatClient,
    ChatRequestError,
    RetryableResponse,
    chat_body,
)
from kimi_student.backends.redact import MASK, public_url, redact
from kimi_student.errors import KimiStudentError
from kimi_student.eval.runners.base import TRANSIENT
from kimi_student.eval.runners.openai_http import OpenAIGenerator, reply_text
from kimi_student.teachers.base import Decoding, TeacherRequest
from kimi_student.teachers.openai_http import PAD_LOGPROB, HTTPTeacher
from kimi_student.teachers.token_map import byte_level
from kimi_student.tokenizer import load_tokenizer
from tests.llama_cpp import recorded
from tests.unit.backends.test_openai_client import OK, run

KEY = "sk-echoed-secret-9f8e7d6c"
NAMES = {"web__search": "web.search"}


def choice(message: Any, **extra: Any) -> dict[str, Any]:
    return {"choices": [{"message": message, "finish_reason": "stop", **extra}]}


def body(data: Any) -> Any:
    return lambda r: httpx.Response(200, json=data)


def lp(token: str, logprob: Any = -0.5, **extra: Any) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, **extra}


MALFORMED = {
    "choices-not-objects": body({"choices": ["x"]}),
    "content-list": body(choice({"role": "assistant", "content": [{"type": "text", "text": "hi"}]})),
    "content-number": body(choice({"role": "assistant", "content": 5})),
    "message-string": body({"choices": [{"message": "hi"}]}),
    "invalid-utf8": lambda r: httpx.Response(200, content=b'{"choices": "\xff\xfe"}'),
    "nested-deep": lambda r: httpx.Response(200, content=b"[" * 100_000 + b"]" * 100_000),
}
TEACHER_ONLY = {
    "logprobs-strings": body(choice({"content": "hi"}, logprobs={"content": ["hi"]})),
    "logprob-abc": body(choice({"content": "hi"}, logprobs={"content": [lp("hi", "abc")]})),
    "top-logprob-abc": body(
        choice({"content": "hi"}, logprobs={"content": [lp("hi", top_logprobs=[lp("hi", "abc")])]})
    ),
    "lone-surrogate": lambda r: httpx.Response(
        200, content=b'{"choices": [{"message": {"content": "a\\ud800b"}}]}'
    ),
}
EVAL_ONLY = {
    "tool-calls-garbage": body(choice({"content": None, "tool_calls": ["garbage"]})),
    "tool-calls-not-list": body(choice({"content": "x", "tool_calls": "garbage"})),
}


def teacher(**kw: Any) -> HTTPTeacher:
    return HTTPTeacher("http://h/v1", vocab=load_tokenizer("smollm2").tok.get_vocab(), **kw)


def request(top: int = 3, max_new_tokens: int = 16) -> TeacherRequest:
    return TeacherRequest(
        "a", ({"role": "user", "content": "q"},), Decoding(max_new_tokens, top_logprobs=top)
    )


@pytest.mark.parametrize("fault", [*MALFORMED, *TEACHER_ONLY])
def test_a_malformed_answer_to_the_teacher_is_retried_then_an_error(
    fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    t, req = teacher(), request()
    step = {**MALFORMED, **TEACHER_ONLY}[fault]
    out, seen, _ = run([step, step], monkeypatch, parse=lambda d: t.parse(d, req), max_retries=1)
    assert isinstance(out, ChatRequestError) and len(seen) == 2, out
    assert "malformed response" in str(out) or "invalid JSON" in str(out)
    out, seen, _ = run([step], monkeypatch, parse=lambda d: t.parse(d, req), max_retries=1)
    assert out.text == "hello" and len(seen) == 2  # a good answer after a bad one is kept


@pytest.mark.parametrize("fault", [*MALFORMED, *EVAL_ONLY])
def test_a_malformed_answer_to_the_eval_runner_is_retried_then_an_error(
    fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = {**MALFORMED, **EVAL_ONLY}[fault]
    out, seen, _ = run([step] * 3, monkeypatch, parse=lambda d: reply_text(d, NAMES, 16), max_retries=2)
    assert isinstance(out, ChatRequestError) and len(seen) == 3 and not out.transient, out


def test_a_body_over_the_cap_is_not_read_further(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = json.dumps(choice({"content": "x" * 5000})).encode()
    out, seen, _ = run([lambda r: httpx.Response(200, content=huge)], monkeypatch, max_response_bytes=1000)
    assert isinstance(out, ChatRequestError) and "over 1000 bytes" in str(out) and len(seen) == 1


def test_text_beyond_max_tokens_is_cut_and_ends_with_length() -> None:
    text, reason = reply_text(choice({"content": "y" * 100_000}), NAMES, 2)
    assert len(text) == 128 and reason == "length"
    assert reply_text(choice({"content": "short"}), NAMES, 2) == ("short", "stop")
    t = teacher()
    reply = t.parse(choice({"content": "z" * 100_000}), request(max_new_tokens=4))
    assert len(reply.text) == 256 and reply.finish_reason == "length"


def test_redact_takes_out_keys_bearer_tokens_and_url_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIMI_API_KEY", KEY)
    assert redact(f"invalid key {KEY}!") == f"invalid key {MASK}!"
    assert redact("Authorization: Bearer abc.def-123") == f"Authorization: Bearer {MASK}"
    assert redact("see https://bob:hunter22@h.example/x") == f"see https://{MASK}@h.example/x"
    assert public_url("http://apiuser:SECRETPASS123@127.0.0.1:18777/lp/v1") == "http://127.0.0.1:18777/lp/v1"
    assert redact("the password SECRETPASS123 again") == f"the password {MASK} again"  # remembered


def test_a_key_echoed_in_an_error_or_an_answer_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", KEY)

    def echo(code: int) -> Any:
        return lambda r: httpx.Response(code, text=f"invalid key: {r.headers['Authorization']} ({KEY})")

    out, seen, _ = run([echo(401)], monkeypatch, api_key_env="MY_KEY")
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in str(out) and str(out).startswith("HTTP 401: invalid key: Bearer [REDACTED]")
    out, _, _ = run([echo(500)], monkeypatch, api_key_env="MY_KEY", max_retries=0)
    assert KEY not in str(out) and "HTTP 500: invalid key" in str(out)  # a retried status keeps its message
    said = body(choice({"content": f"your key is {KEY}", "tool_calls": [{"function": {"name": KEY}}]}))
    out, _, _ = run([said], monkeypatch, parse=lambda d: reply_text(d, NAMES, 64), api_key_env="MY_KEY")
    assert KEY not in json.dumps(out) and MASK in out[0]


def test_an_unset_api_key_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(KimiStudentError, match="NOPE_NOT_SET"):
        HTTPTeacher("http://h/v1", api_key_env="NOPE_NOT_SET")


def test_a_server_refusing_the_greedy_extras_is_asked_again_without_them() -> None:
    seen: list[dict[str, Any]] = []

    def handler(r: httpx.Request) -> httpx.Response:
        seen.append(json.loads(r.content))
        if "repeat_penalty" in seen[-1]:
            return httpx.Response(400, text="Unrecognized request argument supplied: repeat_penalty")
        return httpx.Response(200, json=OK)

    async def go() -> Any:
        c = ChatClient("http://h/v1", max_retries=0)
        c.http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        try:
            first = await c.complete(chat_body("m", [], 8, 0.0, 0), lambda d: d)
            return first, await c.complete(chat_body("m", [], 8, 0.0, 0), lambda d: d)
        finally:
            await c.aclose()

    assert asyncio.run(go()) == (OK, OK)
    assert len(seen) == 3 and seen[0]["repeat_penalty"] == 1.0  # refused once, then never sent again
    assert not GREEDY_SAMPLING.keys() & (seen[1].keys() | seen[2].keys())


def _parse_recorded(name: str) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    """A reply recorded from llama.cpp's server (tests/data/llama_cpp/), parsed by the HTTP teacher as it
    was asked for: (recorded exchange, the server's logprobs.content, the TeacherReply)."""
    rec = recorded(name)
    asked = rec["request"]
    reply = teacher().parse(rec["response"], request(asked["top_logprobs"], asked["max_tokens"]))
    return rec, rec["response"]["choices"][0]["logprobs"]["content"][: asked["max_tokens"]], reply


def test_the_teacher_maps_llama_cpp_s_recorded_logprobs_to_padded_byte_level_ids() -> None:
    """llama.cpp's server, recorded: tokens as decoded text (" French") with `bytes` null, a top list
    shorter than asked (it merges entries whose text is the same) and "" entries (a token holding part of a
    UTF-8 character: its bytes are dropped). Every named token maps to its byte-level id ("ĠFrench"); a
    short list is padded to K and "" is stored like a pad (id -1, PAD_LOGPROB: its mass stays in the tail);
    greedy with repeat_penalty 1, the chosen token is the server's top-1."""
    rec, content, reply = _parse_recorded("kd_logprobs")
    k, vocab = rec["request"]["top_logprobs"], load_tokenizer("smollm2").tok.get_vocab()
    given = [[t["token"] for t in pos["top_logprobs"]] for pos in content]
    assert min(map(len, given)) < k and any("" in g for g in given)  # the shapes this test is about
    assert all(pos["bytes"] is None for pos in content) and " French" in [pos["token"] for pos in content]
    assert vocab["ĠFrench"] in reply.token_ids
    for g, ids, lps in zip(given, reply.topk_ids, reply.topk_logprobs, strict=True):
        assert len(ids) == len(lps) == k
        assert [i < 0 for i in ids] == [t == "" for t in g] + [True] * (k - len(g))
        assert all(lp == PAD_LOGPROB for i, lp in zip(ids, lps, strict=True) if i < 0)
    assert reply.token_ids == [ids[0] for ids in reply.topk_ids]
    assert load_tokenizer("smollm2").tok.decode(reply.token_ids) == reply.text


def test_a_llama_cpp_answer_of_partial_utf8_tokens_keeps_no_chosen_id() -> None:
    """Recorded: an answer in Japanese, each character two tokens that llama.cpp writes as "" each. No
    chosen id can be named (-1), so training keeps the text and drops these logprobs."""
    _, content, reply = _parse_recorded("kd_partial_utf8")
    assert reply.text and all(pos["token"] == "" for pos in content)
    assert reply.token_ids == [-1] * len(content)
    assert all(
        lp == PAD_LOGPROB
        for ids, lps in zip(reply.topk_ids, reply.topk_logprobs)
        for i, lp in zip(ids, lps)
        if i < 0
    )


def test_the_teacher_reads_token_bytes_and_vocabulary_strings() -> None:
    """Other servers: a token's `bytes` list (OpenAI), or the vocabulary's own string ("Ġhi")."""
    vocab = load_tokenizer("smollm2").tok.get_vocab()
    content = [
        lp(" é", -0.2, bytes=[32, 195, 169], top_logprobs=[lp(" é", -0.2)]),
        lp("hello", -0.3, top_logprobs=[lp("hello", -0.3), lp("Ġhi", -1.0), lp("zzqx-not-a-token", -4.0)]),
    ]
    reply = teacher().parse(choice({"content": " é hello"}, logprobs={"content": content}), request(top=3))
    assert reply.token_ids == [vocab[byte_level(" é".encode())], vocab["hello"]]
    assert reply.topk_ids[0] == [vocab[byte_level(" é".encode())], -1, -1]  # padded to K
    assert reply.topk_ids[1] == [vocab["hello"], vocab["Ġhi"], -1]  # an unknown token: a pad
    assert reply.topk_logprobs[1] == [-0.3, -1.0, PAD_LOGPROB]


def test_the_teacher_id_holds_no_url_password() -> None:
    t = HTTPTeacher("http://apiuser:SECRETPASS123@127.0.0.1:18777/lp/v1", model="m")
    assert t.id == "http:127.0.0.1:18777/m"


def test_tools_protocol_sends_tool_choice_and_empty_content_with_tool_calls() -> None:
    """Recorded from llama.cpp's server: the turn after a tool call, as the eval runner builds it (the
    assistant turn with content ""), answered 200; the same turn with content null answered 500. The
    runner still builds exactly the accepted messages, with `tool_choice` (without it llama.cpp's
    function-calling chat format ignores `tools=`) and the greedy sampling fields."""
    from tests.llama_cpp_record import TOOL_CONVERSATION

    accepted, refused = recorded("tools_second_turn"), recorded("tools_null_content")
    assert (accepted["status"], refused["status"]) == (200, 500)
    assert refused["request"]["messages"][1]["content"] is None
    gen = OpenAIGenerator("http://h/v1", "m", protocol="tools")
    try:
        b = gen.body(TOOL_CONVERSATION)
    finally:
        gen.close()
    assert b["messages"] == accepted["request"]["messages"] and b["messages"][1]["content"] == ""
    assert b["tool_choice"] == "auto" and b["tools"] == accepted["request"]["tools"]
    assert b["repeat_penalty"] == 1.0


def test_a_retried_500_keeps_llama_cpp_s_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp's recorded 500 (it refused content null): after the retries the error still says why."""
    refused = recorded("tools_null_content")
    reply = lambda r: httpx.Response(500, json=refused["response"])  # noqa: E731
    out, seen, _ = run([reply] * 3, monkeypatch, max_retries=2)
    assert isinstance(out, ChatRequestError) and len(seen) == 3 and out.transient
    assert str(out).startswith("gave up after 3 attempts: HTTP 500: ")
    assert "7 validation errors" in str(out)  # the server's own words, from error.message
    assert "'msg': 'Input should be a valid string'" in str(out)  # the useful part, past 200 characters
    assert '{"error"' not in str(out) and "\n" not in str(out)  # the message, not the JSON, one line


def test_an_unreachable_server_makes_a_transient_error() -> None:
    gen = OpenAIGenerator("http://127.0.0.1:9/v1", "m", max_retries=0, timeout_s=5)  # port 9: nobody
    try:
        (g,) = gen.generate([[{"role": "user", "content": "q"}]])
    finally:
        gen.close()
    assert g.finish == "error" and g.error is not None and g.error.startswith(TRANSIENT)


def test_first_choice_refuses_what_is_not_the_schema() -> None:
    from kimi_student.backends.openai_client import first_choice

    for data in ({"choices": ["x"]}, {"choices": "xy"}, choice([1]), choice({"content": {"a": 1}})):
        with pytest.raises(RetryableResponse, match="malformed"):
            first_choice(data)
