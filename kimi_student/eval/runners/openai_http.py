"""openai_http: any OpenAI-compatible /v1/chat/completions endpoint (Kimi API, vLLM, `transformers serve`).

Requests, retries (429, 5xx, timeouts, truncated bodies; Retry-After honoured) and the API key are the
HTTP teacher's. Two tool protocols:
- `text` (default): tool calls are the `<tool_call>` text the model writes (the request asks the server to
  stop at `</tool_call>`); tool responses go back as `tool` messages holding `<tool_response>` text.
- `tools`: the registry is sent as `tools=`; the server's structured `tool_calls` are written into the
  transcript as `<tool_call>` text, and results go back as `tool` messages with their `tool_call_id`.
  OpenAI function names allow no dots, so `web.search` travels as `web__search`.
A request that still fails after its retries makes the item an error (counted, never scored as a pass).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from kimi_student.chat.template import model_folder_sha256
from kimi_student.chat.transcript import (
    CALL_CLOSE,
    CALL_OPEN,
    RESP_CLOSE,
    RESP_OPEN,
    format_call,
    parse_transcript,
)
from kimi_student.errors import KimiStudentError
from kimi_student.eval.runners.tool_loop import Generation, Messages
from kimi_student.fingerprint import sha256_json
from kimi_student.teachers.base import Decoding, TeacherError, TeacherReply, TeacherRequest
from kimi_student.teachers.openai_http import HTTPTeacher, _Retryable
from kimi_student.tools.registry import registry_json

PROTOCOLS = ("text", "tools")


def api_name(name: str) -> str:
    return name.replace(".", "__")


def openai_tools() -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": api_name(t["name"]),
                "description": t["description"],
                "parameters": t["parameters"],
            },
        }
        for t in registry_json()
    ]


_RESPONSE = re.compile(re.escape(RESP_OPEN) + r"(.*)" + re.escape(RESP_CLOSE) + r"\Z", re.S)


def to_tools_messages(conversation: Messages) -> Messages:
    """The tool loop's text-protocol conversation in OpenAI's structured form: an assistant turn with a
    `<tool_call>` becomes `tool_calls`, and the `tool` message after it answers that call by id."""
    out: Messages = []
    pending: str | None = None
    for k, m in enumerate(conversation):
        if m["role"] == "assistant":
            calls = [c for c in parse_transcript(m["content"]).calls if c.name is not None]
            if calls:
                c = calls[0]
                pending = f"call_{k}"
                prefix = m["content"][: c.start].strip()
                fn = {
                    "name": api_name(c.name or ""),
                    "arguments": json.dumps(c.arguments, ensure_ascii=False),
                }
                out.append(
                    {
                        "role": "assistant",
                        "content": prefix or None,
                        "tool_calls": [{"id": pending, "type": "function", "function": fn}],
                    }
                )
                continue
        if m["role"] == "tool" and pending is not None:
            body = _RESPONSE.match(m["content"])
            out.append(
                {"role": "tool", "tool_call_id": pending, "content": body.group(1) if body else m["content"]}
            )
            pending = None
            continue
        out.append(dict(m))
    return out


class _ChatClient(HTTPTeacher):
    """The HTTP teacher's transport with the runner's body (stop string or tools) and tool-call replies."""

    protocol = "text"
    names: dict[str, str] = {}

    def body(self, request: TeacherRequest) -> dict[str, Any]:
        body = super().body(request)
        if self.protocol == "tools":
            body["tools"] = openai_tools()
        else:
            body["stop"] = [CALL_CLOSE]
        return body

    def _parse(self, data: Any, request: TeacherRequest) -> TeacherReply:
        ch, msg = self.first_choice(data)
        text = msg.get("content") or ""
        calls = msg.get("tool_calls") or []
        if msg.get("content") is None and not calls:
            raise _Retryable("choice without message content")
        for c in calls[:1]:  # one call per turn, as in the text protocol
            fn = c.get("function") or {}
            args = fn.get("arguments")
            try:
                args = json.loads(args) if isinstance(args, str) else args
            except json.JSONDecodeError:
                pass  # kept as the string the model wrote; scoring counts it as invalid arguments
            name = self.names.get(fn.get("name", ""), fn.get("name", ""))
            text = (text + "\n" if text.strip() else "") + format_call(name, args)
        return TeacherReply(text=text, finish_reason=ch.get("finish_reason"), usage=data.get("usage") or {})


class OpenAIGenerator:
    def __init__(
        self,
        url: str,
        model: str,
        max_new_tokens: int = 256,
        protocol: str = "text",
        concurrency: int = 4,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        api_key_env: str | None = None,
    ):
        if protocol not in PROTOCOLS:
            raise KimiStudentError(f"unknown tool protocol {protocol!r} (available: {', '.join(PROTOCOLS)})")
        self.loop = asyncio.new_event_loop()  # one loop for the client's whole life (its pool is bound to it)
        self.client = _ChatClient(
            url,
            model,
            concurrency=concurrency,
            max_retries=max_retries,
            timeout_s=timeout_s,
            api_key_env=api_key_env,
        )
        self.client.protocol = protocol
        self.client.names = {api_name(t["name"]): t["name"] for t in registry_json()}
        self.protocol, self.max_new_tokens = protocol, max_new_tokens
        self.decoding = Decoding(max_new_tokens=max_new_tokens, temperature=0.0, top_logprobs=0)
        # a model served from a local folder has that folder's digest, as in hf_local
        self.fingerprint = (
            model_folder_sha256(model)
            if Path(model).is_dir()
            else sha256_json({"endpoint": self.client.url, "model": model})
        )

    async def _one(self, sem: asyncio.Semaphore, conv: Messages) -> Generation:
        msgs = to_tools_messages(conv) if self.protocol == "tools" else conv
        async with sem:
            try:
                r = await self.client.complete(TeacherRequest("", tuple(msgs), self.decoding))
            except TeacherError as e:
                return Generation("", "error", error=str(e))
        finish = {"stop": "stop", "tool_calls": "stop", "length": "length"}.get(r.finish_reason or "", "stop")
        text = r.text
        if self.protocol == "text" and finish == "stop" and text.rfind(CALL_OPEN) > text.rfind(CALL_CLOSE):
            text += CALL_CLOSE  # the server dropped the stop string (OpenAI semantics)
        return Generation(text, finish)

    def generate(self, conversations: list[Messages]) -> list[Generation]:
        async def run() -> list[Generation]:
            sem = asyncio.Semaphore(self.client.concurrency)
            return list(await asyncio.gather(*(self._one(sem, c) for c in conversations)))

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.client.aclose())
            self.loop.close()
