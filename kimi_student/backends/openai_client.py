"""One client for any OpenAI-compatible /v1/chat/completions endpoint (Kimi API, vLLM, SGLang,
llama.cpp's server, `transformers serve`), shared by the HTTP teacher and the openai_http eval runner.

Retries 429, 5xx, timeouts, transport errors, truncated or undecodable bodies and answers without a
usable choice or with a malformed one (`RetryableResponse`) with exponential backoff and full jitter,
honouring Retry-After; a request that still fails raises ChatRequestError with the last reason (the
server's own message kept, redacted). The API key comes from the environment; everything a server says
passes through `redact.redact` before anyone can write it, so neither the key nor a URL password reaches
a log, an error, a result or a dataset.

Caps: at most MAX_RESPONSE_BYTES (8 MiB) of a body are read (a larger one is an error, not retried), a
whole request (connect to last byte) takes at most `timeout_s`, and `max_text_chars` bounds the text a
caller keeps of an answer whose server ignored `max_tokens` (the caller records `length`).

Greedy requests (temperature 0) also send GREEDY_SAMPLING: the penalties some servers apply by default
(llama.cpp's `repeat_penalty` 1.1) set to neutral, so that greedy is greedy there too. top_k, top_p and
min_p are not sent: they never drop the most likely token, so they cannot change a greedy answer, and
llama.cpp computes its top logprobs after them. Most servers ignore fields they do not know; one that
refuses them with HTTP 400 or 422 naming the field (`transformers serve`: "Unexpected fields in the
request") is asked again at once without them, and the client sends them no more.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from kimi_student.backends.redact import KEY_ENVS, public_url, redact, remember
from kimi_student.errors import KimiStudentError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 300.0  # a server asking for longer is waited on this long, then asked again
MAX_RESPONSE_BYTES = 8 << 20  # a body is read up to here; a larger one is an error
MAX_CHARS_PER_TOKEN = 64  # text beyond max_tokens * this came from a server that ignored max_tokens
ERROR_BODY_CHARS = 1000  # of a server's error message kept in the reason (validation errors run long)
GREEDY_SAMPLING = {"repeat_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0}

T = TypeVar("T")


class RetryableResponse(Exception):
    """A 200 answer with nothing to use in it (no choices, no content) or a malformed one: retried like
    a 5xx."""


class ChatRequestError(Exception):
    """A request that failed for good: a client error (4xx but the retried ones), a body over the cap, or
    every retry spent. `transient`: the last try failed on the way (no answer, a timeout or a retried
    status), so asking again later may well succeed."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def endpoint(base: str) -> str:
    """`https://host`, `https://host/v1` or the full path all mean …/v1/chat/completions. KimiStudentError
    for a URL that does not parse."""
    try:
        u = urlsplit(base.rstrip("/"))
    except ValueError as e:
        raise KimiStudentError(f"not an endpoint URL: {redact(base)!r} ({e})") from None
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
    """A request body; `top_p` goes only with sampling, GREEDY_SAMPLING only without, logprobs only when
    a count is given."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
    }
    if temperature > 0:
        body["top_p"] = top_p
    else:
        body.update(GREEDY_SAMPLING)
    if top_logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = top_logprobs
    return body


def malformed(why: str) -> RetryableResponse:
    return RetryableResponse(f"malformed response: {why}")


def first_choice(data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(choice, message) of a response body; an empty or malformed one is retried like a 5xx."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        raise RetryableResponse("empty choices")
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise malformed("choices is not a list of objects")
    msg = choices[0].get("message") or {}
    if not isinstance(msg, dict):
        raise malformed("message is not an object")
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        raise malformed(f"message content is a {type(content).__name__}, not a string")
    return choices[0], msg


def finish_reason(choice: dict[str, Any]) -> str | None:
    reason = choice.get("finish_reason")
    return reason if isinstance(reason, str) else None


def capped_text(text: str, max_tokens: int) -> tuple[str, bool]:
    """(text, cut): at most what `max_tokens` tokens can hold; longer text came from a server that
    ignored max_tokens, and is cut (the caller records finish `length`)."""
    limit = max_tokens * MAX_CHARS_PER_TOKEN
    return (text[:limit], True) if len(text) > limit else (text, False)


def _redacted(obj: Any) -> Any:
    """A parsed body with every string passed through `redact` (keys echoed in an answer stay out)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, list):
        return [_redacted(x) for x in obj]
    if isinstance(obj, dict):
        return {redact(k): _redacted(v) for k, v in obj.items()}
    return obj


def error_snippet(status: int, content: bytes) -> str:
    """`HTTP <status>: <the start of the server's message>`, one line, redacted: the `error.message` (or
    `detail`) of a JSON body where it has one, else the body's text."""
    text = content[: ERROR_BODY_CHARS * 4].decode("utf-8", "replace")
    text = _json_message(content) or text
    text = re.sub(r"\s+", " ", redact(text)).strip()[:ERROR_BODY_CHARS]
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


def _json_message(content: bytes) -> str | None:
    if len(content) > 1 << 16 or not content.lstrip().startswith(b"{"):
        return None
    try:
        body = json.loads(content)
    except ValueError:
        return None
    err = body.get("error")
    said = (
        err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else body.get("detail")
    )
    return said[: ERROR_BODY_CHARS * 4] if isinstance(said, str) and said.strip() else None


class _Oversize(Exception):
    pass


class ChatClient:
    """POSTs bodies to one endpoint, retrying until `parse` accepts an answer or the retries run out.
    An `api_key_env` that is not set is refused (a run would otherwise go without its key)."""

    def __init__(
        self,
        base_url: str,
        max_retries: int = 6,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        api_key_env: str | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ):
        self.url = endpoint(base_url)
        self.public_url = public_url(self.url)  # remembers a URL password, for redact
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self.timeout_s, self.max_response_bytes = timeout_s, max_response_bytes
        if api_key_env:
            remember(env=api_key_env)
        key = api_key(api_key_env)
        if api_key_env and key is None:
            raise KimiStudentError(f"--api-key-env {api_key_env}: that environment variable is not set")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s))
        self.stats = {"requests": 0, "retries": 0}
        self.greedy_sampling = True  # dropped for good after a 400/422 that names one of its fields
        self._rng = random.Random(0)  # seeded: the same run waits the same

    async def _post(self, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
        """The response and its body, read up to the cap, the whole within `timeout_s`."""

        async def read() -> tuple[httpx.Response, bytes]:
            async with self.http.stream("POST", self.url, json=body) as r:
                buf = bytearray()
                async for chunk in r.aiter_bytes():
                    buf += chunk
                    if len(buf) > self.max_response_bytes:
                        raise _Oversize
                return r, bytes(buf)

        try:
            return await asyncio.wait_for(read(), self.timeout_s)
        except asyncio.TimeoutError:
            raise httpx.ReadTimeout("request took longer than timeout_s") from None

    def _sendable(self, body: dict[str, Any]) -> dict[str, Any]:
        return body if self.greedy_sampling else {k: v for k, v in body.items() if k not in GREEDY_SAMPLING}

    def _refuses_extras(self, status: int, content: bytes, sent: dict[str, Any]) -> bool:
        """A 400 or 422 naming a GREEDY_SAMPLING field that was sent: the server takes no extras (also
        true for a request that was in flight when another one found out)."""
        if status not in (400, 422) or not GREEDY_SAMPLING.keys() & sent.keys():
            return False
        said = content[:4096].decode("utf-8", "replace")
        if any(k in said for k in GREEDY_SAMPLING):
            self.greedy_sampling = False
            return True
        return False

    async def complete(self, body: dict[str, Any], parse: Callable[[Any], T]) -> T:
        """`parse(response JSON, redacted)`; it raises RetryableResponse for an answer worth asking again
        (any TypeError, ValueError, KeyError or AttributeError of `parse` on a server's data counts as a
        malformed answer too)."""
        last, transient = "no attempt", False
        attempt = 0
        while True:
            wait = None
            try:
                self.stats["requests"] += 1
                sent = self._sendable(body)
                r, content = await self._post(sent)
                if r.status_code in RETRY_STATUS:
                    last, transient = error_snippet(r.status_code, content), True
                    wait = retry_after_seconds(r.headers.get("retry-after"))
                elif self._refuses_extras(r.status_code, content, sent):
                    continue  # asked again at once without them; not a retry
                elif r.status_code >= 400:
                    raise ChatRequestError(error_snippet(r.status_code, content))
                else:
                    return self._parsed(content, parse)
            except RetryableResponse as e:
                last, transient = str(e), False
            except _Oversize:
                raise ChatRequestError(
                    f"response body over {self.max_response_bytes} bytes (did the server ignore "
                    "max_tokens?): not read further"
                ) from None
            except httpx.TimeoutException:
                last, transient = "timeout", True
            except httpx.TransportError as e:
                last, transient = f"transport error: {type(e).__name__}", True
            if attempt == self.max_retries:
                break
            self.stats["retries"] += 1
            backoff = min(self.max_backoff_s, self.backoff_s * 2**attempt) * self._rng.random()
            await asyncio.sleep(min(wait, MAX_RETRY_AFTER_S) if wait is not None else backoff)
            attempt += 1
        raise ChatRequestError(f"gave up after {self.max_retries + 1} attempts: {last}", transient)

    @staticmethod
    def _parsed(content: bytes, parse: Callable[[Any], T]) -> T:
        try:
            data = _redacted(json.loads(content))
        except RecursionError:
            raise malformed("nested too deep") from None
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            raise RetryableResponse("truncated or invalid JSON body") from None
        try:
            return parse(data)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
            raise malformed(f"{type(e).__name__}: {redact(str(e))[:200]}") from None

    async def aclose(self) -> None:
        await self.http.aclose()
