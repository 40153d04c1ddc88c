"""A resume asks again the items that failed only because the model's server could not be reached
(review reliability.md, "Real servers": a resume kept them as errors), and keeps every other row."""

from __future__ import annotations

from pathlib import Path

from kimi_student.eval.identity import RunnerFacts
from kimi_student.eval.resume import part_header, part_row_seal, read_parts
from kimi_student.eval.runners.base import TRANSIENT, transient
from kimi_student.eval.runners.options import RunnerOptions
from kimi_student.jsonl import dumps_line

FACTS = RunnerFacts("openai_http", "f" * 64, "w" * 64, {"max_new_tokens": 8})
KEY = {"runner": "openai_http"}
DOWN = {"id": "b", "error": TRANSIENT + "gave up after 5 attempts: transport error: ConnectError"}


def write_part(folder: Path, name: str, rows: list[dict]) -> None:
    folder.mkdir(exist_ok=True)
    seal = part_row_seal(KEY, FACTS)  # sealed, as the workers write them
    (folder / name).write_text(part_header(KEY, 0, FACTS) + "".join(dumps_line(seal.sealed(r)) for r in rows))


def test_rows_of_an_unreachable_server_are_asked_again_and_replaced(tmp_path: Path) -> None:
    parts = tmp_path / "r.jsonl.parts"
    answered = {"id": "a", "error": None}
    refused = {"id": "c", "error": "HTTP 400: bad request"}  # the server answered: kept
    write_part(parts, "a-1-w0.jsonl", [answered, DOWN, refused])
    got = read_parts(parts, KEY, {"a", "b", "c"})
    assert transient(DOWN) and not transient(refused) and not transient(answered)
    assert set(got.rows) == {"a", "b", "c"} and set(got.settled) == {"a", "c"}
    write_part(parts, "a-2-w0.jsonl", [{"id": "b", "error": None}])  # the resume's answer wins
    got = read_parts(parts, KEY, {"a", "b", "c"})
    assert got.rows["b"]["error"] is None and set(got.settled) == {"a", "b", "c"}


def test_the_resume_key_holds_no_url_password() -> None:
    opts = RunnerOptions(url="http://u:SECRETPASS123@127.0.0.1:8/v1")
    assert opts.to_json()["url"] == "http://127.0.0.1:8/v1"
