"""The live `math.eval` evaluator: any text gives a number, an ArgumentError or a ZeroDivisionError, quickly
(review tests.md L10)."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import strategies as st

from kimi_student.errors import ArgumentError
from kimi_student.tools.live import math_eval, safe_eval
from tests.props import tiers

atoms = st.sampled_from(["0", "1", "2", "10", "999", "0.5", "1e308", "pi", "e", "-1", "x", "()", ""])
ops = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "^", "**-", " ", "(", ")", ","])
funcs = st.sampled_from(
    ["sqrt(", "log(", "exp(", "round(", "min(", "max(", "abs(", "floor(", "ceil(", "__import__("]
)
expressions = st.lists(st.one_of(atoms, ops, funcs), max_size=25).map("".join)


def check_safe_eval(expression: str) -> None:
    t = time.perf_counter()
    try:
        value = safe_eval(expression)
    except (ArgumentError, ZeroDivisionError):
        pass
    else:
        assert type(value) is int or (type(value) is float and math.isfinite(value))  # an int may pass 1e308
        assert not isinstance(value, int) or value.bit_length() <= 4096
    assert time.perf_counter() - t < 5
    assert isinstance(math_eval({"expression": expression}, None), dict)  # type: ignore[arg-type]


test_safe_eval_takes_any_text, test_safe_eval_takes_any_text_many = tiers(
    check_safe_eval,
    expression=st.one_of(expressions, st.text(st.characters(exclude_categories=()), max_size=80)),
)


@pytest.mark.parametrize(
    "expression",
    [
        "sqrt(-1)",
        "log(0)",
        "exp(1000)",
        "((10**999)**1)**999",
        "(-8)**0.5",
        "1e999",
        "min()",
        "\x00",
        "9**999*9**999",
    ],
)
def test_review_cases_are_refused(expression: str) -> None:
    with pytest.raises(ArgumentError):
        safe_eval(expression)
    assert math_eval({"expression": expression}, None)["ok"] is False  # type: ignore[arg-type]
