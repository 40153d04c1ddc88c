"""`eval --runner openai_http` against a server whose model writes hostile text (review reliability.md D6,
D7: NaN in a call, a bad port, a lone surrogate, PII in a `<tool_response>` it wrote itself): every item
gets a row and the run ends with a report, twice over the same folder."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.support import ks, read_rows, send_json, serve, write_rows

LEAK = '<tool_response>{"leak": "ceo.private@evil-corp.com +1 415 555 0134"}</tool_response>\nDone.'
ANSWERS = [
    '<tool_call>{"name": "web.crawl", "arguments": {"url": "https://example.com/", "max_pages": NaN}}</tool_call>',
    '<tool_call>{"name": "web.crawl", "arguments": {"url": "https://example.com:99999/x"}}</tool_call>',
    '<tool_call>{"name": "web.crawl", "arguments": "{\\"url\\": \\"http://[::1\\", \\"max_pages\\": Infinity}"}</tool_call>',
    "Integration: \ud800 odd text.",
    LEAK,
    "See http://[oops/x and HTTPS://evil.example.net/phish.",
]


class HostileServer:
    """The first turn of each new conversation answers with the next of ANSWERS in turn (the same
    conversation always gets the same answer); a turn after a tool response answers `Done.`."""

    def __init__(self) -> None:
        seen: dict[str, int] = {}
        lock = threading.Lock()

        def answer(prompt: str) -> str:
            with lock:
                return ANSWERS[seen.setdefault(prompt, len(seen)) % len(ANSWERS)]

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                msgs = body["messages"]
                text = "Done." if msgs[-1]["role"] == "tool" else answer(msgs[-1]["content"])
                msg = {"role": "assistant", "content": text}
                data = json.dumps(
                    {"choices": [{"message": msg, "finish_reason": "stop"}]}
                ).encode()  # \ud800 escaped
                send_json(self, data)

        self.httpd, root = serve(H)
        self.url = f"{root}/v1"


def test_hostile_model_over_http_gives_a_row_per_item_and_a_report(dataset: dict, tmp_path: Path) -> None:
    items = read_rows(dataset["final"])[:13]  # header + 12 items
    subset = write_rows(tmp_path / "d.jsonl", items)
    out, rep = tmp_path / "r.jsonl", tmp_path / "r.json"
    fixtures = dataset["gen"].parent / (dataset["gen"].name + ".fixtures")
    srv = HostileServer()
    try:
        for _ in range(2):
            r = ks(
                "eval", "--runner", "openai_http", "--url", srv.url, "--model", "m", "--in", subset,
                "--out", out, "--report", rep, "--fixtures", fixtures, "--fixtures", "kimi_student/tools/fixtures",
            )  # fmt: skip
            assert r.returncode == 1, r.stdout + r.stderr
            assert "Traceback" not in r.stderr
            rows = read_rows(out)
            assert sorted(row["id"] for row in rows) == sorted(it["id"] for it in items[1:])
            report = json.loads(rep.read_text())
            assert report["gates"]["privacy_ok_rate"]["status"] == "fail"
    finally:
        srv.httpd.shutdown()
    outputs = {row["output"].split("\n")[0]: row for row in rows}
    leak = next(row for row in rows if "evil-corp.com" in row["output"])
    assert not leak["privacy_ok"] and any("evil-corp.com" in v for v in leak["privacy_violations"])
    surrogate = next(row for row in rows if "odd text" in row["output"])
    assert "surrogate" in surrogate["error"] and "\ufffd" in surrogate["output"]
    nan = next(row for key, row in outputs.items() if "NaN" in key)
    assert "malformed JSON" in nan["calls"][0]["error"] and "malformed_call" in nan["output"]
