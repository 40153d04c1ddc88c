"""One client for any OpenAI-compatible /v1/chat/completions endpoint (Kimi API, vLLM, SGLang,
`transformers serve`), shared by the HTTP teacher and the openai_http eval runner.

Retries 429, 5xx, timeouts, transport errors, truncated bodies and answers without a usable choice
(`RetryableResponse`) with exponential backoff and full jitter, honouring Retry-After. The API key comes
from the environment and never appears in logs, errors or a dataset header.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from kimi_student.errors import KimiStudentError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
KEY_ENVS = ("KIMI_STUDENT_API_KEY", "KIMI_API_KEY", "MOONSHOT_API_KEY", "OPENAI_API_KEY")
MAX_RETRY_AFTER_S = 300.0  # a server asking for longer is waited on this long, then asked again

T = TypeVar("T")


class RetryableResponse(Exception):
    """A 200 answer with nothing to use in it (no choices, no content): retried like a 5xx."""


class ChatRequestError(Exception):
    """A request that failed for good: a client error (4xx but the retried ones), or every retry spent."""


def endpoint(base: str) -> str:
    """`https://host`, `https://host/v1` or the full path all mean …/v1/chat/completions. KimiStudentError
    for a URL that does not parse."""
    try:
        u = urlsplit(base.rstrip("/"))
    except ValueError as e:
        raise KimiStudentError(f"not an endpoint URL: {base!r} ({e})") from None
    path = u.path
    if not path.endswith("/chat/completions"):
        path = (path if path.endswith("/v1") else path + "/v1") + "/chat/completions"
    return urlunsplit((u.scheme, u.netloc, path, "", ""))


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    try:
        secs = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, secs) if math.isfinite(secs) else None
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError, OSError, IndexError):
        return None


def api_key(env: str | None = None) -> str | None:
    """The key from `env` when named, else from the first of KEY_ENVS that is set."""
    return next((os.environ[e] for e in ((env,) if env else KEY_ENVS) if e and os.environ.get(e)), None)


def chat_body(
    model: str,
    messages: list[dict[str, Any]],
    max_tokens: int,
    temperature: float,
    seed: int,
    top_p: float = 1.0,
    top_logprobs: int | None = None,
) -> dict[str, Any]:
    """A request body; `top_p` goes only with sampling, logprobs only when a count is given."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
    }
    if temperature > 0:
        body["top_p"] = top_p
    if top_logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = top_logprobs
    return body


def first_choice(data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(choice, message) of a response body; an empty one is retried like a 5xx."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        raise RetryableResponse("empty choices")
    return choices[0], choices[0].get("message") or {}


class ChatClient:
    """POSTs bodies to one endpoint, retrying until `parse` accepts an answer or the retries run out."""

    def __init__(
        self,
        base_url: str,
        max_retries: int = 6,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        api_key_env: str | None = None,
    ):
        self.url = endpoint(base_url)
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        key = api_key(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s))
        self.stats = {"requests": 0, "retries": 0}
        self._rng = random.Random(0)  # seeded: the same run waits the same

    async def complete(self, body: dict[str, Any], parse: Callable[[Any], T]) -> T:
        """`parse(response JSON)`; it raises RetryableResponse for an answer worth asking again."""
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            wait = None
            try:
                self.stats["requests"] += 1
                r = await self.http.post(self.url, json=body)
                if r.status_code in RETRY_STATUS:
                    last = f"HTTP {r.status_code}"
                    wait = retry_after_seconds(r.headers.get("retry-after"))
                elif r.status_code >= 400:
                    raise ChatRequestError(f"HTTP {r.status_code}: {r.text[:200]}")
                else:
                    try:
                        return parse(json.loads(r.content))
                    except json.JSONDecodeError:
                        last = "truncated or invalid JSON body"
            except RetryableResponse as e:
                last = str(e)
            except httpx.TimeoutException:
                last = "timeout"
            except httpx.TransportError as e:
                last = f"transport error: {type(e).__name__}"
            if attempt == self.max_retries:
                break
            self.stats["retries"] += 1
            backoff = min(self.max_backoff_s, self.backoff_s * 2**attempt) * self._rng.random()
            await asyncio.sleep(min(wait, MAX_RETRY_AFTER_S) if wait is not None else backoff)
        raise ChatRequestError(f"gave up after {self.max_retries + 1} attempts: {last}")

    async def aclose(self) -> None:
        await self.http.aclose()
