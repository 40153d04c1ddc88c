"""The prompt wrapper: how an item's prompt and the tool registry are put in front of a model.

Its sha256 goes into every report header, so a changed wrapper is never compared silently.

- `system` (default): a system message listing every tool and the protocol, then the item's full
  prompt (CAWS header, context and request) as the user message.
- `request`: the request alone (the text after the prompt's last `User: `), no system message: the
  form the toy student of `kimi-student toy-e2e` is trained on.
"""

from __future__ import annotations

import json
from typing import Any

from kimi_student.errors import KimiStudentError
from kimi_student.fingerprint import sha256_bytes
from kimi_student.tools.registry import registry_json

SYSTEM_TEMPLATE = """You are a tool-using assistant. Tools:
{tools}
To call a tool, write <tool_call>{{"name": NAME, "arguments": {{...}}}}</tool_call> and stop.
Each result comes back as <tool_response>JSON</tool_response>.
In the final answer, state every fact taken from a tool in a sentence that begins with "Integration:".
If no tool is needed, or the request must be declined, answer without calling tools."""
REQUEST_MARKER = "User: "
WRAPPERS = ("system", "request")


def system_prompt() -> str:
    tools = "\n".join(
        json.dumps({k: t[k] for k in ("name", "description", "parameters")}, ensure_ascii=False)
        for t in registry_json()
    )
    return SYSTEM_TEMPLATE.format(tools=tools)


def check_wrapper(wrapper: str) -> None:
    if wrapper not in WRAPPERS:
        raise KimiStudentError(f"unknown prompt wrapper {wrapper!r} (available: {', '.join(WRAPPERS)})")


def item_messages(item: dict[str, Any], wrapper: str = "system") -> list[dict[str, str]]:
    """The chat messages a model is given for an item, before any tool turn."""
    check_wrapper(wrapper)
    if wrapper == "request":
        return [{"role": "user", "content": item["prompt"].rpartition(REQUEST_MARKER)[2]}]
    return [{"role": "system", "content": system_prompt()}, {"role": "user", "content": item["prompt"]}]


def prompt_wrapper_sha256(wrapper: str = "system") -> str:
    check_wrapper(wrapper)
    if wrapper == "request":
        return sha256_bytes(f"request-only: text after the last {REQUEST_MARKER!r}".encode())
    return sha256_bytes(SYSTEM_TEMPLATE.encode("utf-8"))
