"""The prompt wrapper: how an item's prompt and the tool registry are put in front of a model.

Its sha256 goes into every report header, so a changed wrapper is never compared silently.
"""

from __future__ import annotations

import json

from kimi_student.fingerprint import sha256_bytes
from kimi_student.tools.registry import registry_json

SYSTEM_TEMPLATE = """You are a tool-using assistant. Tools:
{tools}
To call a tool, write <tool_call>{{"name": NAME, "arguments": {{...}}}}</tool_call> and stop.
Each result comes back as <tool_response>JSON</tool_response>.
In the final answer, state every fact taken from a tool in a sentence that begins with "Integration:".
If no tool is needed, or the request must be declined, answer without calling tools."""


def system_prompt() -> str:
    tools = "\n".join(
        json.dumps({k: t[k] for k in ("name", "description", "parameters")}, ensure_ascii=False)
        for t in registry_json()
    )
    return SYSTEM_TEMPLATE.format(tools=tools)


def prompt_wrapper_sha256() -> str:
    return sha256_bytes(SYSTEM_TEMPLATE.encode("utf-8"))
