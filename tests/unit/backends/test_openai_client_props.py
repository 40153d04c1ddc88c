"""endpoint() and retry_after_seconds() take any text (review tests.md §5)."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from kimi_student.backends.openai_client import endpoint, retry_after_seconds
from kimi_student.errors import KimiStudentError
from tests.props import tiers

any_text = st.text(st.characters(exclude_categories=()), max_size=80)


def check_endpoint(base: str) -> None:
    try:
        url = endpoint(base)
    except KimiStudentError:
        return
    assert url.endswith("/chat/completions")


test_endpoint_takes_any_text, test_endpoint_takes_any_text_many = tiers(
    check_endpoint,
    base=any_text | st.builds(lambda h, p: f"http://{h}{p}", any_text, st.sampled_from(["", "/v1", "/"])),
)


def check_retry_after(value: str | None) -> None:
    secs = retry_after_seconds(value)
    assert secs is None or (math.isfinite(secs) and secs >= 0)


http_dates = st.builds(
    lambda d, y: f"{d}, 01 Jan {y} 00:00:00 GMT", st.sampled_from(["Mon", "Xyz", ""]), st.integers(-10, 99999)
)
test_retry_after_takes_any_text, test_retry_after_takes_any_text_many = tiers(
    check_retry_after,
    value=st.none() | any_text | http_dates | st.sampled_from(["nan", "inf", "-inf", "1e999", "-3", "2.5"]),
)


def test_endpoint_of_a_url_that_does_not_parse_is_an_error() -> None:
    for base in ("http://[oops", "http://[::1"):
        try:
            endpoint(base)
        except KimiStudentError as e:
            assert "not an endpoint URL" in str(e)
        else:
            raise AssertionError(base)
