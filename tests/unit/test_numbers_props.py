"""format_number and find_numbers: the generator/scorer contract, and no crash on any input (review L11)."""

from __future__ import annotations

import math

import pytest
from hypothesis import strategies as st

from kimi_student.numbers import LOCALES, find_numbers, format_number, numbers_equal
from tests.props import tiers


def check_written_numbers_read_back(units: int, decimals: int, locale: str) -> None:
    value = units / 10**decimals
    text = format_number(value, locale, decimals)
    expected = float(f"{value:.{decimals}f}")
    found = [
        n for n in find_numbers(f"about {text} items") if any(numbers_equal(v, expected) for v in n.values)
    ]
    assert found, (value, locale, text)


test_written_numbers_read_back, test_written_numbers_read_back_many = tiers(
    check_written_numbers_read_back,
    units=st.integers(-(10**12), 10**12),
    decimals=st.integers(0, 4),
    locale=st.sampled_from(LOCALES),
)


def check_format_number_takes_any_finite_float(value: float, locale: str) -> None:
    text = format_number(value, locale)
    assert text and all(isinstance(n.values, frozenset) for n in find_numbers(text))


test_format_number_takes_any_finite_float, test_format_number_any_float_many = tiers(
    check_format_number_takes_any_finite_float,
    value=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**30), 10**30),
    locale=st.sampled_from(LOCALES),
)


def check_find_numbers_takes_any_text(text: str) -> None:
    for n in find_numbers(text):
        assert 0 <= n.start < n.end <= len(text) and n.values


test_find_numbers_takes_any_text, test_find_numbers_takes_any_text_many = tiers(
    check_find_numbers_takes_any_text,
    text=st.text(st.characters(exclude_categories=()), max_size=200)
    | st.text(st.sampled_from("0123456789.,' %-+\u00a0\u202f\u2212"), max_size=60),
)


@pytest.mark.parametrize("value, text", [(1e-7, "0.000000"), (1.5e-05, "0.000015"), (2.5e-3, "0.0025")])
def test_tiny_values_format(value: float, text: str) -> None:
    assert format_number(value, "en-US") == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(value: float) -> None:
    with pytest.raises(ValueError):
        format_number(value, "en-US")
