"""The scorer's shortcuts refuse only what the full scan would refuse: a value's pattern is run only where
its words occur (ASCII texts), a PII scan only where its pattern can match (issue 11, section 5)."""

from __future__ import annotations

import re

from hypothesis import strategies as st

from kimi_student import privacy
from kimi_student.eval.score.grounding import Span, Value, _string_pattern
from kimi_student.privacy import _pii_values
from kimi_student.tokenizer import at_boundary, boundaries
from kimi_student.tools.normalize import normalize_query
from tests.props import tiers

# Mostly ASCII letters, blanks and punctuation, with the characters case-insensitive matching treats
# specially (Kelvin sign, long s, dotted and dotless i, sharp s) and some digits.
chars = st.sampled_from("abcKkSsIiXy \t\n.-_@:+1234567890\u212a\u017f\u0130\u0131\u00dfAPI")
texts = st.text(chars, max_size=60)
words = st.text(chars, min_size=1, max_size=12)


def check_value_shortcut(text: str, value: str) -> None:
    span = Span(text)
    for v in (Value(value), Value(normalize_query(value) or "x")):
        pat = _string_pattern(v.text)
        assert span.lax_contains(v) == (pat.search(span.norm) is not None)
        assert list(span.strict_matches(v)) == [(m.start(), m.end()) for m in pat.finditer(text)]


def _pii_full(text: str) -> set[tuple[str, str]]:
    """privacy._pii_values without its shortcuts: every scan over the whole text."""
    found = {("email", m.group(0).casefold()) for m in privacy._emails(text)}
    found |= {("phone", re.sub(r"\D", "", m.group(0))) for m in privacy.PHONE.finditer(text)}
    found |= {("uuid", m.group(0).lower()) for m in privacy.UUID.finditer(text)}
    for m in privacy.CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and privacy.luhn_ok(digits):
            found.add(("card", digits))
    return found | {("secret", m.group(0)) for m in privacy.SECRET.finditer(text)}


pii_chars = st.sampled_from("aAbf0123456789-@. +()_:=kKeyYsSpPtToOnNwWdDrRxXgGhHiIzZ\u017f\u212a")


def check_pii_shortcuts(text: str) -> None:
    assert _pii_values(text) == _pii_full(text)


def check_value_from_the_text(text: str, a: int, b: int, upper: bool) -> None:
    """The value is a piece of the text (or of its normalised form): the shortcuts' matching cases."""
    for source in (text, normalize_query(text)):
        piece = source[min(a, b) : max(a, b)]
        check_value_shortcut(text, piece.upper() if upper else piece or "x")


test_value_shortcut, test_value_shortcut_many = tiers(check_value_shortcut, text=texts, value=words)
test_value_from_the_text, test_value_from_the_text_many = tiers(
    check_value_from_the_text,
    text=texts,
    a=st.integers(0, 60),
    b=st.integers(0, 60),
    upper=st.booleans(),
)
# Whole PII-looking pieces (cards with separators, each secret's cue) glued together.
pii_pieces = st.lists(
    st.sampled_from(
        [
            *(
                "4111 1111 1111 1111",
                "4111-1111-1111-1111",
                "411111111111111",
                "5555555555554444",
                "1234 5678",
            ),
            *(
                "+1 415 555 0100",
                "(415) 555-0100",
                "415-555-0100",
                "0",
                "7",
                " ",
                "-",
                ".",
                ",",
                "\n",
                "\uff11",
            ),
            *(
                "ghp_" + "a" * 36,
                "gho_x",
                "sk-" + "A" * 24,
                "AKIA" + "B" * 16,
                "xoxb-1234567890",
                "AIza" + "c" * 35,
            ),
            *("api_key: 0123456789abcdef0123", "API-KEY=", "Token = abcdefabcdefabcdef12", "password", "gh"),
            *("123e4567-e89b-12d3-a456-426614174000", "a@b.co", "K", "\u00df", "api", "key"),
        ]
    ),
    max_size=10,
).map("".join)
test_pii_shortcuts, test_pii_shortcuts_many = tiers(
    check_pii_shortcuts, text=st.text(pii_chars, max_size=80) | pii_pieces
)
# Every ASCII blank `\s` matches (\x1c to \x1f too), for the ASCII strict matching without a regex.
ascii_chars = st.sampled_from("abkKsS_.-1 \t\n\r\x0b\x0c\x1c\x1f")
test_ascii_value_shortcut, test_ascii_value_shortcut_many = tiers(
    check_value_shortcut,
    text=st.text(ascii_chars, max_size=60),
    value=st.text(ascii_chars, min_size=1, max_size=12),
)
test_ascii_value_from_the_text, test_ascii_value_from_the_text_many = tiers(
    check_value_from_the_text,
    text=st.text(ascii_chars, max_size=60),
    a=st.integers(0, 60),
    b=st.integers(0, 60),
    upper=st.booleans(),
)


def test_pii_shortcuts_table() -> None:
    for text in (
        "sk-" + "a" * 24,
        "API_KEY = abcdefghijklmnop1234",
        "\u017fecret: abcdefghijklmnop1234",  # long s: case-insensitively an `s`
        "call +1 415 555 0100 or 4111 1111 1111 1111",
        "123e4567-e89b-12d3-a456-426614174000",
        "mail a.b@example.com",
        "ghp_" + "A" * 30,
        "plain words only",
    ):
        assert _pii_values(text) == _pii_full(text), text


def test_bounds_answer_as_boundaries_does():
    """item._Bounds asks boundaries() of the tokens around a position only: the same answer for every
    position, on real tokenizer offsets and on offsets no tokenizer gives (unsorted, overlapping,
    reversed)."""
    import random

    from kimi_student.eval.score.item import _Bounds
    from kimi_student.tokenizer import boundaries, load_tokenizer
    from tests.unit.test_tokenizer_boundaries import random_text

    rng = random.Random(3)
    texts = [random_text(rng) for _ in range(300)]
    cases = list(zip(texts, (o for _, o in load_tokenizer("smollm2").encode_offsets(texts))))
    for _ in range(1500):
        text = random_text(rng)
        offsets = []
        for _ in range(rng.randint(0, 20)):
            s = rng.randint(0, len(text) + 2)
            offsets.append((s, rng.randint(max(0, s - 3), len(text) + 2)))
        cases.append((text, sorted(offsets) if rng.random() < 0.7 else offsets))
    for text, offsets in cases:
        whole, lazy = boundaries(text, offsets), _Bounds(text, offsets)
        assert {p for p in range(-2, len(text) + 4) if p in lazy} == {
            p for p in whole if -2 <= p < len(text) + 4
        }


@st.composite
def tokenized(draw: st.DrawFn) -> tuple[str, list[tuple[int, int]], int]:
    """A text, token offsets over it (any: overlapping, empty, reversed, past its end) and a position."""
    text = draw(texts)
    bound = st.integers(0, len(text) + 2)
    offsets = draw(st.lists(st.tuples(bound, bound), max_size=6))
    return text, offsets, draw(st.integers(-1, len(text) + 3))


def check_at_boundary(case: tuple[str, list[tuple[int, int]], int]) -> None:
    text, offsets, pos = case
    assert at_boundary(text, offsets, pos) == (pos in boundaries(text, offsets))


test_at_boundary_is_membership, test_at_boundary_many = tiers(check_at_boundary, case=tokenized())
