"""The shared OpenAI-compatible client, in process (httpx's MockTransport, sleeps recorded, not slept):
which answers are retried, how long it waits, where the API key goes. tests/test_kd_mix.py drives the
same client end to end against a fault-injecting server and `transformers serve`."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kimi_student.backends import openai_client as oc
from kimi_student.backends.openai_client import (
    GREEDY_SAMPLING,
    KEY_ENVS,
    RETRY_STATUS,
    ChatClient,
    ChatRequestError,
    RetryableResponse,
    api_key,
    chat_body,
    endpoint,
    first_choice,
    retry_after_seconds,
)

OK = {"choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}]}


@pytest.mark.parametrize(
    "base",
    [
        "http://h:8000",
        "http://h:8000/",
        "http://h:8000/v1",
        "http://h:8000/v1/",
        "http://h:8000/v1/chat/completions",
        "http://h:8000/v1?x=1",
    ],
)
def test_endpoint_forms(base: str) -> None:
    assert endpoint(base) == "http://h:8000/v1/chat/completions"


def test_endpoint_keeps_a_path_prefix() -> None:
    assert endpoint("https://api.example.com/openai") == "https://api.example.com/openai/v1/chat/completions"


def test_retry_after_seconds() -> None:
    assert retry_after_seconds("2") == 2.0 and retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (retry_after_seconds(when) or 0) <= 30
    assert retry_after_seconds(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0


def test_api_key_from_the_named_env_or_the_first_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for e in KEY_ENVS:
        monkeypatch.delenv(e, raising=False)
    assert api_key() is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("KIMI_API_KEY", "")  # set but empty: skipped
    assert api_key() == "sk-openai"
    monkeypatch.setenv("KIMI_STUDENT_API_KEY", "sk-kimi")
    assert api_key() == "sk-kimi"  # KEY_ENVS in order
    monkeypatch.setenv("MY_KEY", "sk-mine")
    assert api_key("MY_KEY") == "sk-mine" and api_key("NOT_SET_ANYWHERE") is None


def test_chat_body_adds_top_p_and_logprobs_only_when_they_apply() -> None:
    msgs = [{"role": "user", "content": "q"}]
    greedy = chat_body("m", msgs, 16, 0.0, 0)
    assert list(greedy) == ["model", "messages", "max_tokens", "temperature", "seed", *GREEDY_SAMPLING]
    assert greedy["repeat_penalty"] == 1.0  # llama.cpp's default 1.1 would make greedy not greedy
    sampled = chat_body("m", msgs, 16, 0.7, 3, top_p=0.9, top_logprobs=5)
    assert sampled["top_p"] == 0.9 and sampled["logprobs"] is True and sampled["top_logprobs"] == 5
    assert not GREEDY_SAMPLING.keys() & sampled.keys()


def test_first_choice_of_an_empty_answer_is_retryable() -> None:
    assert first_choice(OK)[1]["content"] == "hello"
    for data in ({"choices": []}, {}, [], None):
        with pytest.raises(RetryableResponse, match="empty choices"):
            first_choice(data)


Script = list[Callable[[httpx.Request], httpx.Response]]


def run(
    script: Script,
    monkeypatch: pytest.MonkeyPatch,
    parse: Callable[[Any], Any] = lambda d: first_choice(d)[1]["content"],
    **kw: Any,
) -> tuple[Any, list[httpx.Request], list[float]]:
    """Ask once through a client whose transport answers from `script` (then OK); returns the result (or the
    ChatRequestError), the requests seen and the sleeps asked for."""
    seen: list[httpx.Request] = []
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = script.pop(0) if script else (lambda r: httpx.Response(200, json=OK))
        return step(request)

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    monkeypatch.setattr(oc.asyncio, "sleep", fake_sleep)

    async def go() -> Any:
        c = ChatClient("http://h/v1", **kw)
        c.http = httpx.AsyncClient(transport=httpx.MockTransport(handler), headers=c.http.headers)
        try:
            return await c.complete({"model": "m"}, parse)
        except ChatRequestError as e:
            return e
        finally:
            await c.aclose()

    return asyncio.run(go()), seen, sleeps


def status(code: int, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda r: httpx.Response(code, headers=headers, text="boom")


def raise_(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def f(r: httpx.Request) -> httpx.Response:
        raise exc

    return f


@pytest.mark.parametrize("code", sorted(RETRY_STATUS))
def test_each_retry_status_is_retried(code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    out, seen, sleeps = run([status(code)], monkeypatch)
    assert out == "hello" and len(seen) == 2 and len(sleeps) == 1


@pytest.mark.parametrize(
    "fault",
    [
        raise_(httpx.ReadTimeout("slow")),
        raise_(httpx.ConnectError("refused")),
        lambda r: httpx.Response(200, content=b'{"choices": [{"mess'),  # truncated body
        lambda r: httpx.Response(200, json={"choices": []}),
    ],
    ids=["timeout", "transport", "truncated", "empty"],
)
def test_transport_faults_and_unusable_answers_are_retried(
    fault: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, seen, _ = run([fault], monkeypatch)
    assert out == "hello" and len(seen) == 2


def test_retry_after_is_honoured_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, sleeps = run(
        [status(429, **{"Retry-After": "7"}), status(503, **{"Retry-After": "9999"})], monkeypatch
    )
    assert sleeps == [7.0, oc.MAX_RETRY_AFTER_S]


def test_backoff_is_exponential_with_full_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _, sleeps = run([status(500)] * 5, monkeypatch, max_retries=6, backoff_s=1.0, max_backoff_s=4.0)
    assert out == "hello" and len(sleeps) == 5
    assert all(0 <= s <= min(4.0, 2**k) for k, s in enumerate(sleeps))
    _, _, again = run([status(500)] * 5, monkeypatch, max_retries=6, backoff_s=1.0, max_backoff_s=4.0)
    assert again == sleeps  # seeded: the same run waits the same


def test_a_client_error_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    out, seen, sleeps = run([status(400)], monkeypatch)
    assert isinstance(out, ChatRequestError) and str(out) == "HTTP 400: boom"
    assert len(seen) == 1 and sleeps == []


def test_it_gives_up_after_its_retries_with_the_last_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    out, seen, _ = run([status(503)] * 10, monkeypatch, max_retries=2)
    # the server's own message is kept (a retried 500 used to lose it), and the failure is transient
    assert isinstance(out, ChatRequestError) and str(out) == "gave up after 3 attempts: HTTP 503: boom"
    assert len(seen) == 3 and out.transient

    def no_content(d: Any) -> str:
        raise RetryableResponse("choice without message content")

    out, seen, _ = run([], monkeypatch, parse=no_content, max_retries=1)
    assert str(out) == "gave up after 2 attempts: choice without message content" and len(seen) == 2
    assert not out.transient  # the server answered: a resume keeps this error


def test_the_api_key_goes_in_the_header_and_nowhere_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    out, seen, _ = run([status(401)], monkeypatch, api_key_env="MY_KEY")
    assert seen[0].headers["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in str(out) and "sk-secret" not in seen[0].content.decode()
    for e in KEY_ENVS:
        monkeypatch.delenv(e, raising=False)
    _, seen, _ = run([], monkeypatch)
    assert "Authorization" not in seen[0].headers
