"""The HTTP teacher: any OpenAI-compatible /v1/chat/completions endpoint (Kimi API, vLLM, SGLang,
`transformers serve`) through backends.openai_client, which owns the retries and the API key. This
adapter builds the request from a TeacherRequest and reads the reply's text and top-k logprobs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kimi_student.backends.openai_client import (
    ChatClient,
    ChatRequestError,
    RetryableResponse,
    chat_body,
    first_choice,
)
from kimi_student.teachers.base import TeacherError, TeacherReply, TeacherRequest


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
        self.client = ChatClient(base_url, max_retries, timeout_s, backoff_s, max_backoff_s, api_key_env)
        self.url = self.client.url
        self.model = model or "default"
        self.id = f"http:{urlsplit(self.url).netloc}/{self.model}"
        self.concurrency = concurrency
        self.top_k = top_k
        self.vocab = vocab  # token string -> local id, to store logprobs as ids when vocabularies match

    def body(self, request: TeacherRequest) -> dict[str, Any]:
        d = request.decoding
        return chat_body(
            self.model,
            list(request.messages),
            d.max_new_tokens,
            d.temperature,
            d.seed,
            d.top_p,
            min(d.top_logprobs, self.top_k) if d.top_logprobs else None,
        )

    def parse(self, data: Any, request: TeacherRequest) -> TeacherReply:
        ch, msg = first_choice(data)
        text = msg.get("content")
        if text is None:
            raise RetryableResponse("choice without message content")
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
        try:
            return await self.client.complete(self.body(request), lambda data: self.parse(data, request))
        except ChatRequestError as e:
            raise TeacherError(str(e)) from None

    async def aclose(self) -> None:
        await self.client.aclose()
