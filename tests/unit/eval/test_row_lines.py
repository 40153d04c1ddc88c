"""A worker spells each scored row's part line and results line from one canonical JSON of the row
(`RowSeal.lines`): both must be, byte for byte, the canonical JSON of the row sealed each way, whatever
keys the row has (none before or after the seal's place, a `seal` inside a value, any text)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from kimi_student.eval.rows import RowSeal
from kimi_student.fingerprint import canonical_json
from tests.props import tiers

PART, RESULTS = RowSeal("test part rows"), RowSeal("test results rows")
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
_keys = st.sampled_from(
    ["id", "output", "seal", "score", "a", "zz", "sealed", "se", "", "é", "calls"]
) | st.text(max_size=8)


def check_lines(row: dict[str, Any], place: int) -> None:
    part, results = PART.lines(row, RESULTS, place)
    assert part == canonical_json(PART.sealed(row))
    assert results == canonical_json(RESULTS.sealed(row, place))


test_lines_are_the_sealed_rows_canonical_json, test_lines_are_the_sealed_rows_canonical_json_many = tiers(
    check_lines, row=st.dictionaries(_keys, _json, max_size=6), place=st.integers(0, 10**6)
)


def test_rows_with_no_member_on_one_side_of_the_seal() -> None:
    for row in ({}, {"a": 1}, {"zz": [{"seal": "x"}]}, {"seal": "old", "id": "i"}, {"output": '\u2028"}'}):
        check_lines(row, 7)
