"""The HTTP teacher: any OpenAI-compatible /v1/chat/completions endpoint (Kimi API, vLLM, SGLang,
llama.cpp's server, `transformers serve`) through backends.openai_client, which owns the retries, the
caps, redaction and the API key. This adapter builds the request from a TeacherRequest and reads the
reply's text and top-k logprobs.

Logprobs are stored as local token ids (teachers.token_map: decoded text or bytes -> the vocabulary's
byte-level form), K per position, K the count asked for: a server that gives fewer (llama.cpp merges
top entries whose token text is the same) is padded with id -1 at PAD_LOGPROB, one that gives more is cut.
An entry whose token is not found is stored like a pad, its logprob dropped, so that its mass stays in
the tail bucket of the sparse KD loss: llama.cpp writes a token that holds part of a UTF-8 character as
"" (its bytes dropped), and its real logprob beside id -1 went to token 0 in training.
A reply that is not what the OpenAI schema says (content not a string, logprobs entries not objects or
not numbers, text that is not valid Unicode) is retried, then recorded as a failure: never stored as an
answer.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from kimi_student.backends import openai_client as oc
from kimi_student.backends.openai_client import malformed
from kimi_student.teachers.base import TeacherError, TeacherReply, TeacherRequest
from kimi_student.teachers.token_map import TokenMap

PAD_LOGPROB = -30.0  # a padded top-k slot: as good as impossible, and finite (no NaN in a KL term)


def _logprob(entry: Any, where: str) -> float:
    if not isinstance(entry, dict):
        raise malformed(f"{where} is not an object")
    lp = entry.get("logprob")
    if isinstance(lp, bool) or not isinstance(lp, int | float) or math.isnan(lp):
        raise malformed(f"{where} has no numeric logprob")
    return max(float(lp), PAD_LOGPROB)


def _usage(data: dict[str, Any]) -> dict[str, int]:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return {}
    return {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}


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
        self.client = oc.ChatClient(base_url, max_retries, timeout_s, backoff_s, max_backoff_s, api_key_env)
        self.url = self.client.url
        self.model = model or "default"
        self.id = f"http:{urlsplit(self.client.public_url).netloc}/{self.model}"  # no userinfo
        self.concurrency = concurrency
        self.top_k = top_k
        self.tokens = (
            TokenMap(vocab) if vocab is not None else None
        )  # logprobs as ids when vocabularies match

    def body(self, request: TeacherRequest) -> dict[str, Any]:
        d = request.decoding
        return oc.chat_body(
            self.model,
            list(request.messages),
            d.max_new_tokens,
            d.temperature,
            d.seed,
            d.top_p,
            min(d.top_logprobs, self.top_k) if d.top_logprobs else None,
        )

    def parse(self, data: Any, request: TeacherRequest) -> TeacherReply:
        ch, msg = oc.first_choice(data)
        text = msg.get("content")
        if text is None:
            raise oc.RetryableResponse("choice without message content")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise malformed("content is not valid Unicode (a lone surrogate)") from None
        text, cut = oc.capped_text(text, request.decoding.max_new_tokens)
        reason = "length" if cut else oc.finish_reason(ch)
        reply = TeacherReply(text=text, finish_reason=reason, usage=_usage(data))
        logprobs = ch.get("logprobs") or {}
        content = (logprobs.get("content") if isinstance(logprobs, dict) else None) or []
        if not isinstance(content, list):
            raise malformed("logprobs.content is not a list")
        if content and self.tokens is not None and request.decoding.top_logprobs:
            self._add_logprobs(reply, content[: request.decoding.max_new_tokens], request)
        return reply

    def _add_logprobs(self, reply: TeacherReply, content: list[Any], request: TeacherRequest) -> None:
        """Each position's chosen id and its top-k (ids, logprobs), K = the count asked for."""
        assert self.tokens is not None
        k = max(1, min(request.decoding.top_logprobs, self.top_k))
        for n, pos in enumerate(content):
            _logprob(pos, f"logprobs.content[{n}]")
            tops = pos.get("top_logprobs") or []
            if not isinstance(tops, list):
                raise malformed(f"logprobs.content[{n}].top_logprobs is not a list")
            lps = [_logprob(t, f"logprobs.content[{n}].top_logprobs entry") for t in tops[:k]]
            ids = [self.tokens.id(t) for t in tops[:k]]
            lps = [lp if i >= 0 else PAD_LOGPROB for i, lp in zip(ids, lps, strict=True)]  # mass -> tail
            reply.token_ids.append(self.tokens.id(pos))
            reply.topk_ids.append(ids + [-1] * (k - len(ids)))
            reply.topk_logprobs.append(lps + [PAD_LOGPROB] * (k - len(lps)))
        reply.logprob_temperature = request.decoding.temperature or 1.0

    async def complete(self, request: TeacherRequest) -> TeacherReply:
        try:
            return await self.client.complete(self.body(request), lambda data: self.parse(data, request))
        except oc.ChatRequestError as e:
            raise TeacherError(str(e)) from None

    async def aclose(self) -> None:
        await self.client.aclose()
