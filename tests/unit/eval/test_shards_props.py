"""--shard i/n: any text gives (i, n) with 0 <= i < n or a KimiStudentError."""

from __future__ import annotations

from hypothesis import strategies as st

from kimi_student.errors import KimiStudentError
from kimi_student.eval.shards import parse_shard
from tests.props import tiers


def check_parse_shard(text: str) -> None:
    try:
        i, n = parse_shard(text)
    except KimiStudentError:
        return
    assert 0 <= i < n


test_parse_shard_takes_any_text, test_parse_shard_takes_any_text_many = tiers(
    check_parse_shard,
    text=st.text(max_size=30)
    | st.builds(lambda a, b: f"{a}/{b}", st.integers(-5, 10), st.integers(-5, 10))
    | st.just("1" * 5000 + "/2"),
)
