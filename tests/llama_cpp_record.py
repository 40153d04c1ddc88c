"""Record llama.cpp's real replies for the fast tests (`make llama-record`, after `make llama-server`).

Each request is one the project itself builds (the HTTP teacher's body with logprobs, the eval runner's
tools-protocol turn after a tool call), sent to the server of tests/llama_cpp.py; the request and the
server's answer go to tests/data/llama_cpp/<name>.json. The fast tests replay them without a server:
- kd_logprobs: greedy, top_logprobs 10 — tokens as decoded text (" the"), `bytes` null, a top list
  shorter than 10 (the server merges entries whose decoded text is the same) and entries "" (a token that
  holds part of a UTF-8 character, decoded alone, its bytes dropped);
- kd_partial_utf8: an answer in Japanese, top_logprobs 5 — every chosen token is "", most lists 1 long;
- tools_second_turn: the assistant turn that made the call has content "" (accepted);
- tools_null_content: the same turn with content null (llama.cpp answers 500, with its message).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx

from kimi_student.chat.transcript import RESP_CLOSE, RESP_OPEN, format_call
from kimi_student.eval.runners.openai_http import OpenAIGenerator
from kimi_student.teachers.base import Decoding, TeacherRequest
from kimi_student.teachers.openai_http import HTTPTeacher
from tests.llama_cpp import RECORDED, llama_server

KD_PROMPTS = {
    "kd_logprobs": ("Write the word café three times.", 10),
    "kd_partial_utf8": ("Say hello in Japanese.", 5),
}
TOOL_CONVERSATION = [
    {"role": "user", "content": "Search the web for bloom filters."},
    {"role": "assistant", "content": format_call("web.search", {"query": "bloom filters"})},
    {  # the tool turn's text as recorded (before format_response sorted a result's keys): opaque here
        "role": "tool",
        "content": RESP_OPEN + '{"results": [{"title": "Bloom filter", "snippet": "A set."}]}' + RESP_CLOSE,
    },
]


def requests(url: str) -> dict[str, dict[str, Any]]:
    teacher = HTTPTeacher(url)
    kd = {
        name: teacher.body(
            TeacherRequest("r", ({"role": "user", "content": p},), Decoding(16, top_logprobs=k))
        )
        for name, (p, k) in KD_PROMPTS.items()
    }
    gen = OpenAIGenerator(url, "smollm2", max_new_tokens=32, protocol="tools")
    try:
        second = gen.body(TOOL_CONVERSATION)
    finally:
        gen.close()
    null = copy.deepcopy(second)
    null["messages"][1]["content"] = None
    return {**kd, "tools_second_turn": second, "tools_null_content": null}


def main() -> None:
    RECORDED.mkdir(parents=True, exist_ok=True)
    with llama_server() as url, httpx.Client(timeout=300) as client:
        for name, body in requests(url).items():
            r = client.post(f"{url}/chat/completions", json=body)
            try:
                answer: Any = r.json()
            except ValueError:
                answer = r.text
            for volatile in ("id", "created"):  # differ on every call; nothing reads them
                if isinstance(answer, dict):
                    answer.pop(volatile, None)
            record = {"request": body, "status": r.status_code, "response": answer}
            (RECORDED / f"{name}.json").write_text(json.dumps(record, ensure_ascii=False) + "\n")
            print(f"{name}: HTTP {r.status_code}, {len(r.content)} bytes")


if __name__ == "__main__":
    main()
