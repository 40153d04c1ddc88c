"""Any OpenAI-compatible /v1/chat/completions endpoint (Kimi API, vLLM, SGLang, `transformers serve`).

Retries 429, 5xx, timeouts, transport errors, truncated bodies and empty choices with exponential
backoff and full jitter, honouring Retry-After. The API key comes from the environment and never
appears in logs, errors or the dataset header.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from kimi_student.teachers.base import TeacherError, TeacherReply, TeacherRequest

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
KEY_ENVS = ("KIMI_STUDENT_API_KEY", "KIMI_API_KEY", "MOONSHOT_API_KEY", "OPENAI_API_KEY")


def endpoint(base: str) -> str:
    """`https://host`, `https://host/v1` or the full path all mean …/v1/chat/completions."""
    u = urlsplit(base.rstrip("/"))
    path = u.path
    if not path.endswith("/chat/completions"):
        path = (path if path.endswith("/v1") else path + "/v1") + "/chat/completions"
    return urlunsplit((u.scheme, u.netloc, path, "", ""))


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HTTPTeacher:
    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        concurrency: int = 8,
        max_retries: int = 6,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        api_key_env: str | None = None,
        top_k: int = 20,
        vocab: dict[str, int] | None = None,
    ):
        self.url = endpoint(base_url)
        self.model = model or "default"
        self.id = f"http:{urlsplit(self.url).netloc}/{self.model}"
        self.concurrency = concurrency
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self.top_k = top_k
        self.vocab = vocab  # token string -> local id, to store logprobs as ids when vocabularies match
        key = next(
            (os.environ[e] for e in ((api_key_env,) if api_key_env else KEY_ENVS) if e and os.environ.get(e)),
            None,
        )
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s))
        self.stats = {"requests": 0, "retries": 0}
        self._rng = random.Random(0)

    def body(self, request: TeacherRequest) -> dict[str, Any]:
        d = request.decoding
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(request.messages),
            "max_tokens": d.max_new_tokens,
            "temperature": d.temperature,
            "seed": d.seed,
        }
        if d.temperature > 0:
            body["top_p"] = d.top_p
        if d.top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = min(d.top_logprobs, self.top_k)
        return body

    @staticmethod
    def first_choice(data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """(choice, message) of a response body; an empty one is retried like a 5xx."""
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices:
            raise _Retryable("empty choices")
        return choices[0], choices[0].get("message") or {}

    def _parse(self, data: Any, request: TeacherRequest) -> TeacherReply:
        ch, msg = self.first_choice(data)
        text = msg.get("content")
        if text is None:
            raise _Retryable("choice without message content")
        reply = TeacherReply(text=text, finish_reason=ch.get("finish_reason"), usage=data.get("usage") or {})
        content = (ch.get("logprobs") or {}).get("content") or []
        if content and self.vocab is not None:
            for pos in content:
                tops = pos.get("top_logprobs") or []
                reply.token_ids.append(self.vocab.get(pos.get("token", ""), -1))
                reply.topk_ids.append([self.vocab.get(t.get("token", ""), -1) for t in tops])
                reply.topk_logprobs.append([float(t.get("logprob", -1e9)) for t in tops])
            reply.logprob_temperature = request.decoding.temperature or 1.0
        return reply

    async def complete(self, request: TeacherRequest) -> TeacherReply:
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            wait = None
            try:
                self.stats["requests"] += 1
                r = await self.client.post(self.url, json=self.body(request))
                if r.status_code in RETRY_STATUS:
                    last = f"HTTP {r.status_code}"
                    wait = retry_after_seconds(r.headers.get("retry-after"))
                elif r.status_code >= 400:
                    raise TeacherError(f"HTTP {r.status_code}: {r.text[:200]}")
                else:
                    try:
                        return self._parse(json.loads(r.content), request)
                    except json.JSONDecodeError:
                        last = "truncated or invalid JSON body"
            except _Retryable as e:
                last = str(e)
            except httpx.TimeoutException:
                last = "timeout"
            except httpx.TransportError as e:
                last = f"transport error: {type(e).__name__}"
            if attempt == self.max_retries:
                break
            self.stats["retries"] += 1
            backoff = min(self.max_backoff_s, self.backoff_s * 2**attempt) * self._rng.random()
            await asyncio.sleep(min(wait, 300.0) if wait is not None else backoff)
        raise TeacherError(f"gave up after {self.max_retries + 1} attempts: {last}")

    async def aclose(self) -> None:
        await self.client.aclose()


class _Retryable(Exception):
    pass
