"""openai_http: any OpenAI-compatible /v1/chat/completions endpoint (Kimi API, vLLM, `transformers serve`).

Requests, retries (429, 5xx, timeouts, truncated bodies; Retry-After honoured) and the API key are
backends.openai_client's, as for the HTTP teacher. Two tool protocols:
- `text` (default): tool calls are the `<tool_call>` text the model writes (the request asks the server to
  stop at `</tool_call>`); tool responses go back as `tool` messages holding `<tool_response>` text.
- `tools`: the registry is sent as `tools=` with `tool_choice: "auto"` (llama.cpp's server ignores
  `tools=` without it); the server's structured `tool_calls` are written into the transcript as
  `<tool_call>` text, and results go back as `tool` messages with their `tool_call_id` (the assistant
  turn that made the call has content `""`, not null: llama.cpp refuses null with a 500).
  OpenAI function names allow no dots, so `web.search` travels as `web__search`.
A request that still fails after its retries makes the item an error (counted, never scored as a pass);
when it failed on the way (no server, timeouts, retried statuses) the error starts with TRANSIENT and a
resume asks that item again. A malformed answer (content not a string, tool calls not objects) is retried
like a 5xx; text longer than max_new_tokens can hold is cut and the turn ends with `length`.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from kimi_student.backends.openai_client import (
    ChatClient,
    ChatRequestError,
    RetryableResponse,
    capped_text,
    chat_body,
    finish_reason,
    first_choice,
    malformed,
)
from kimi_student.chat.transcript import (
    CALL_CLOSE,
    CALL_OPEN,
    RESP_CLOSE,
    RESP_OPEN,
    format_call,
    parse_transcript,
)
from kimi_student.errors import KimiStudentError
from kimi_student.eval.runners.base import TRANSIENT
from kimi_student.eval.runners.tool_loop import Generation, Messages
from kimi_student.fingerprint import model_folder_sha256, sha256_json
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
                        "content": prefix,  # "" rather than null: llama.cpp refuses null
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


def _tool_call(call: Any, names: dict[str, str]) -> str:
    """One structured tool call as `<tool_call>` text."""
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name", ""), str):
        raise malformed("a tool call is not an object with a function name")
    args = fn.get("arguments")
    try:
        args = json.loads(args) if isinstance(args, str) else args
    except (json.JSONDecodeError, RecursionError):
        pass  # kept as the string the model wrote; scoring counts it as invalid arguments
    name = names.get(fn.get("name", ""), fn.get("name", ""))
    return format_call(name, args)


def reply_text(data: Any, names: dict[str, str], max_tokens: int) -> tuple[str, str | None]:
    """(text, finish_reason) of a response: its content, plus its first structured tool call written as
    `<tool_call>` text (`names` maps API function names back to tool names). Text beyond what
    `max_tokens` can hold is cut, with finish `length`."""
    ch, msg = first_choice(data)
    text = msg.get("content") or ""
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise malformed("tool_calls is not a list")
    if msg.get("content") is None and not calls:
        raise RetryableResponse("choice without message content")
    for c in calls[:1]:  # one call per turn, as in the text protocol
        text = (text + "\n" if text.strip() else "") + _tool_call(c, names)
    text, cut = capped_text(text, max_tokens)
    return text, "length" if cut else finish_reason(ch)


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
        self.client = ChatClient(url, max_retries=max_retries, timeout_s=timeout_s, api_key_env=api_key_env)
        self.names = {api_name(t["name"]): t["name"] for t in registry_json()}
        self.model, self.protocol, self.max_new_tokens = model, protocol, max_new_tokens
        self.concurrency = concurrency
        # a model served from a local folder has that folder's digest, as in hf_local
        self.fingerprint = (
            model_folder_sha256(model)
            if Path(model).is_dir()
            else sha256_json({"endpoint": self.client.public_url, "model": model})
        )

    def body(self, conv: Messages) -> dict[str, Any]:
        """Greedy, no logprobs; the tool protocol adds the registry (`tools`) or the stop string (`text`)."""
        msgs = to_tools_messages(conv) if self.protocol == "tools" else list(conv)
        body = chat_body(self.model, msgs, self.max_new_tokens, temperature=0.0, seed=0)
        if self.protocol == "tools":
            body["tools"] = openai_tools()
            body["tool_choice"] = "auto"
        else:
            body["stop"] = [CALL_CLOSE]
        return body

    async def _one(self, sem: asyncio.Semaphore, conv: Messages) -> Generation:
        async with sem:
            try:
                text, reason = await self.client.complete(
                    self.body(conv), lambda d: reply_text(d, self.names, self.max_new_tokens)
                )
            except ChatRequestError as e:
                return Generation("", "error", error=(TRANSIENT if e.transient else "") + str(e))
        finish = {"stop": "stop", "tool_calls": "stop", "length": "length"}.get(reason or "", "stop")
        if self.protocol == "text" and finish == "stop" and text.rfind(CALL_OPEN) > text.rfind(CALL_CLOSE):
            text += CALL_CLOSE  # the server dropped the stop string (OpenAI semantics)
        return Generation(text, finish)

    def generate(self, conversations: list[Messages]) -> list[Generation]:
        async def run() -> list[Generation]:
            sem = asyncio.Semaphore(self.concurrency)
            return list(await asyncio.gather(*(self._one(sem, c) for c in conversations)))

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.client.aclose())
            self.loop.close()
