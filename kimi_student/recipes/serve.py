"""`transformers serve` on 127.0.0.1 for a local checkpoint folder: the real OpenAI-compatible server the
runner smoke and the tests put behind the openai_http runner."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kimi_student.errors import KimiStudentError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def transformers_serve(checkpoint: str | Path, startup_s: float = 180.0) -> Iterator[str]:
    """Serve the folder; yields the base URL (`http://127.0.0.1:PORT`); stops the server on exit."""
    import httpx

    port = free_port()
    exe = Path(sys.executable).parent / "transformers"
    cmd = [str(exe), "serve", str(checkpoint), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    try:
        deadline = time.time() + startup_s
        while True:
            if proc.poll() is not None:
                tail = proc.stdout.read().decode(errors="replace")[-2000:] if proc.stdout else ""
                raise KimiStudentError(f"transformers serve exited with {proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise KimiStudentError(f"transformers serve did not answer /health within {startup_s:.0f} s")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
