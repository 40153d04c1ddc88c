"""load_prompts: any JSONL file gives requests or an InputError naming the line (review tests.md §5)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import strategies as st

from kimi_student.data.kd_mix import load_prompts
from kimi_student.errors import InputError
from tests.props import tiers

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(st.sampled_from(["role", "content", "x"]), kids, max_size=3)
    ),
    max_leaves=8,
)
rows = st.dictionaries(
    st.sampled_from(["id", "prompt", "messages", "__header__", "other"]),
    json_values | st.lists(st.dictionaries(st.sampled_from(["role", "content"]), json_values), max_size=3),
    max_size=4,
)
lines = st.one_of(rows.map(json.dumps), json_values.map(json.dumps), st.text(max_size=20))


def check_load_prompts(content: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.jsonl"
        path.write_text("\n".join(content) + "\n", encoding="utf-8")
        try:
            reqs = load_prompts(path)
        except InputError:
            return
        assert len({r.id for r in reqs}) == len(reqs)


test_load_prompts_takes_any_file, test_load_prompts_takes_any_file_many = tiers(
    check_load_prompts, content=st.lists(lines, max_size=5)
)


@pytest.mark.parametrize(
    "line",
    [
        '{"id": "a", "messages": ["hi"]}',
        '{"id": "a", "prompt": "x", "n": ' + "1" * 5000 + "}",
        '{"id": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
)
def test_bad_rows_are_input_errors(tmp_path: Path, line: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(InputError):
        load_prompts(path)
