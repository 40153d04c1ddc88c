"""Claims: what an answer states that can be checked, and what supports it (DESIGN.md section 4).

One row per rule of `find_claims`, then one per rule of `Sources.supports`; then arbitrary text, which
gives claims in bounded time and never an exception.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import strategies as st

from kimi_student.eval.score.claims import Sources, find_claims
from tests.props import tiers

FIND_CASES = [
    # (text, [(kind, text)])
    pytest.param("The total is 1,234.56.", [("number", "1,234.56")], id="number-sentence-end"),
    pytest.param("Il y a 28 280,96 €.", [("number", "28 280,96")], id="number-fr-grouped"),
    pytest.param(
        "It has 2.098.190 downloads.", [("version", "2.098.190")], id="de-grouped-looks-like-version"
    ),
    pytest.param(
        "at version 4.9.12, released 2026-01-01.",
        [("version", "4.9.12"), ("date", "2026-01-01")],
        id="version-date",
    ),
    pytest.param(
        "See https://example.com/a/b.", [("url", "https://example.com/a/b")], id="url-without-end-dot"
    ),
    pytest.param("Mail ana.silva@example.com now.", [("email", "ana.silva@example.com")], id="email"),
    pytest.param('The page "Alpha | Guide" says so.', [("quote", "Alpha | Guide")], id="quote"),
    pytest.param("Le titre est « Alpha ».", [("quote", "Alpha")], id="guillemets"),
    pytest.param(
        "It printed 0x1f and sha256.", [("name", "0x1f"), ("name", "sha256")], id="letters-and-digits"
    ),
    pytest.param(
        "in src/app/config.py and web.crawl",
        [("name", "src/app/config.py"), ("name", "web.crawl")],
        id="paths",
    ),
    pytest.param(
        "MAX_RETRIES is set; SyntaxError; KUBERNETES",
        [("name", "MAX_RETRIES"), ("name", "SyntaxError"), ("name", "KUBERNETES")],
        id="identifiers",
    ),
    pytest.param(
        "He lives in Paris. Paris is big: Yes", [("name", "Paris")], id="capitalised-inside-a-sentence-only"
    ),
    pytest.param(
        "I think e.g. the JSON API is fine", [], id="abbreviations-and-short-acronyms-are-no-claims"
    ),
    pytest.param("the 2nd result, the 3rd page", [], id="ordinals"),
    pytest.param("1. first\n2) second", [], id="list-markers"),
    pytest.param("Version 5.10 changed", [("number", "5.10")], id="sentence-initial-word-and-number"),
    pytest.param(
        "the url https://a.com/x/1 and utf-8-notes.md",
        [("url", "https://a.com/x/1"), ("name", "utf-8-notes.md")],
        id="digits-inside-are-part-of-the-claim",
    ),
]


@pytest.mark.parametrize(("text", "expected"), FIND_CASES)
def test_find_claims(text, expected):
    claims = find_claims(text)
    assert [(c.kind, c.text) for c in claims] == expected
    assert all(text[c.start : c.end] == c.text for c in claims)


def test_find_claims_offsets_shift():
    (c,) = find_claims("is 42.", offset=100)
    assert (c.start, c.end) == (103, 105)


RESULT = {
    "ok": True,
    "title": "Alpha Guide",
    "url": "https://example.com/alpha/intro",
    "text": "The recommended limit is 36 per worker\nVersion 4.9.12 changed it",
    "value": 71725.41,
    "weekly_downloads": 5599820,
}
SUPPORT_CASES = [
    # (claim text inside an answer, supported by RESULT)
    pytest.param("The value is 71,725.41.", True, id="number-en"),
    pytest.param("The value is 71.725,41.", True, id="number-de"),
    pytest.param("The value is 71725.4.", True, id="number-within-relative-1e-6"),
    pytest.param("The value is 71,726.", False, id="number-rounded-to-units-is-another-number"),
    pytest.param("It has 55,99,820 downloads.", True, id="number-en-IN"),
    pytest.param("The limit is 36.", True, id="number-inside-a-result-string"),
    pytest.param("The limit is 37.", False, id="number-not-stated"),
    pytest.param("at version 4.9.12.", True, id="version-literal"),
    pytest.param("at version 4.9.13.", False, id="version-other"),
    pytest.param("See https://example.com/alpha/intro.", True, id="url-equal"),
    pytest.param("See https://example.com/alpha.", True, id="url-path-prefix"),
    pytest.param("See https://example.com/alpha/other.", False, id="url-sibling-is-not-stated"),
    pytest.param("See HTTPS://EXAMPLE.COM/alpha/intro/.", True, id="url-case-and-trailing-slash"),
    pytest.param('The page "alpha  guide" says.', True, id="quote-normalised"),
    pytest.param('The page "Alpha Guides" says.', False, id="quote-at-word-edges"),
    pytest.param('It says "ok".', False, id="a-result-key-supports-nothing"),
    pytest.param("The weekly_downloads field.", False, id="a-result-key-is-no-name"),
    pytest.param("Read the Guide today.", True, id="name-inside-a-value"),
]


@pytest.mark.parametrize(("text", "supported"), SUPPORT_CASES)
def test_supports(text, supported):
    (claim,) = find_claims(text)
    assert Sources([RESULT]).supports(claim) is supported


def test_keyed_sources_support_argument_names():
    (claim,) = find_claims("I set max_pages to the cap.")
    assert not Sources([RESULT]).supports(claim)
    assert Sources([RESULT], keyed=[{"max_pages": 10}]).supports(claim)


def check_any_text(text: str) -> None:
    sources = Sources([text])
    for c in find_claims(text):
        assert text[c.start : c.end] == c.text
        assert sources.supports(c) or c.kind != "number"  # a text states its own numbers


test_any_text_gives_claims_inside_it, test_any_text_many = tiers(check_any_text, text=st.text(max_size=400))


@pytest.mark.parametrize(
    "hostile",
    ["0123456789abcdef" * 6400, "a_" * 50_000, "a." * 50_000, '"' * 100_000, "aB" * 50_000, "@a.a" * 25_000],
)
def test_linear_time_on_long_runs(hostile):
    t = time.process_time()
    find_claims(hostile)
    assert time.process_time() - t < 2.0
