"""llama.cpp's OpenAI-compatible server for the tests that need a real one: PyPI llama-cpp-python, built by
bench/llama_server.sh into .venv-llama, serving the embedded SmolLM2 GGUF on loopback; a recording proxy
in front of it (what the CLI sent, what the server answered); and the replies recorded from it
(tests/data/llama_cpp/, written by `make llama-record`), which the fast tests replay without a server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx

from tests.support import ROOT, serve

LLAMA_VENV = Path(os.environ.get("LLAMA_VENV") or ROOT / ".venv-llama")
LLAMA_PY = LLAMA_VENV / "bin" / "python"
BUILT = any(LLAMA_VENV.glob(".installed-llama-cpp-python-*"))  # the stamp bench/llama_server.sh leaves last
RECORDED = ROOT / "tests" / "data" / "llama_cpp"
ABSENT = f"{LLAMA_VENV.name} is absent (no finished build): `make llama-server` builds llama.cpp's server (~15 min on 2 cores)"


def recorded(name: str) -> dict[str, Any]:
    """One recorded exchange: {"request": body sent, "status": int, "response": body answered}."""
    return json.loads((RECORDED / f"{name}.json").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_server(
    api_key: str | None = None, n_ctx: int = 4096, chat_format: str | None = None, logprobs: bool = True
) -> Iterator[str]:
    """`python -m llama_cpp.server` on 127.0.0.1 serving the embedded SmolLM2; yields its …/v1 URL. With
    `api_key` it refuses requests that do not carry that key. Its default threads (half the cores) are
    kept: with 2 generation threads on a busy 2-core machine it made 1-3 tokens/s, with 1 about 45."""
    from kimi_student.tokenizer import smollm2_gguf

    port = _free_port()
    cmd = [
        str(LLAMA_PY), "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", str(n_ctx),
    ]  # fmt: skip
    if api_key:
        cmd += ["--api_key", api_key]
    if chat_format:
        cmd += ["--chat_format", chat_format]
    if not logprobs:  # logits of every prompt position are costly, and only logprobs need them
        cmd += ["--logits_all", "false"]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(proc, f"http://127.0.0.1:{port}", log, api_key)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen, root: str, log: Any, api_key: str | None) -> None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"llama_cpp.server exited {proc.returncode}:\n{log.read()[-3000:]}")
        try:
            if httpx.get(f"{root}/v1/models", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("llama_cpp.server did not answer within 180 s")


class Recorder:
    """A loopback proxy in front of `upstream` (…/v1): each POST goes through unchanged (headers included)
    and is kept as {"path", "request", "status", "response"} in `exchanges`, in the order answered."""

    def __init__(self, upstream: str) -> None:
        self.exchanges: list[dict[str, Any]] = []
        root = upstream.removesuffix("/v1")
        exchanges = self.exchanges
        client = httpx.Client(timeout=600)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers["content-length"]))
                keep = {
                    k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")
                }
                r = client.post(root + self.path, content=raw, headers=keep)
                exchanges.append(
                    {
                        "path": self.path,
                        "request": json.loads(raw),
                        "status": r.status_code,
                        "response": _json(r),
                    }
                )
                self.send_response(r.status_code)
                self.send_header("content-type", r.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        self.client = client
        self.httpd, proxy_root = serve(Handler)
        self.url = f"{proxy_root}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.client.close()


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text
