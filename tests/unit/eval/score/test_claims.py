"""Claims: what an answer states that can be checked, and what supports it (DESIGN.md section 4).

One row per rule of `find_claims`, then one per rule of `Sources.supports`; then arbitrary text, which
gives claims in bounded time and never an exception.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left

import pytest
from hypothesis import strategies as st

from kimi_student.eval.score.claims import (
    _CLAIM,
    QUOTE_MAX,
    Sources,
    _collect,
    _normalized_lines,
    _url_form,
    find_claims,
)
from kimi_student.eval.score.grounding import occurs
from kimi_student.numbers import NUMBER_RE, find_numbers
from kimi_student.privacy import URL
from kimi_student.tools.normalize import normalize_query
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

# The claim pattern as it was written before its start guard and possessive runs (issue 11, section 5):
# the one in claims.py must find the same matches, alternative by alternative.
PLAIN_CLAIM = re.compile(
    "|".join(
        (
            rf"(?P<url>{URL.pattern})",
            r"(?P<email>(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)",
            rf'"(?P<q1>[^"\n]{{1,{QUOTE_MAX}}})"',
            rf"\u201c(?P<q2>[^\u201d\n]{{1,{QUOTE_MAX}}})\u201d",
            rf"\u00ab\s?(?P<q3>[^\u00bb\n]{{1,{QUOTE_MAX}}}?)\s?\u00bb",
            rf"\u201e(?P<q4>[^\u201c\u201d\n]{{1,{QUOTE_MAX}}})[\u201c\u201d]",
            r"(?P<date>(?<![\w.-])\d{4}-\d{2}-\d{2}(?![\w-]))",
            r"(?P<version>(?<![\w.])v?\d+(?:\.\d+){2,}(?![\w]|\.\d))",
            rf"(?P<number>{NUMBER_RE.pattern})",
            r"(?P<path>(?<![\w./-])[\w-]+(?:[./][\w-]+)+)",
            r"(?P<ident>\b(?:\w+_\w+|[A-Za-z]*[a-z][A-Z]\w*|[A-Z]{5,}\d*|\w*(?:\d[A-Za-z]|[A-Za-z]\d)\w*)\b)",
            r"(?P<word>\b[A-Z][a-z]+\b)",
        )
    )
)
# Letters of both cases, digits (an Arabic-Indic one too), every character a claim starts or ends with,
# the characters case-insensitive matching folds (long s, Kelvin sign), blanks.
claim_chars = st.sampled_from(
    "aZbQvxAEKé_9\u0663 .,:;-/@%+'\"\u201c\u201d\u00ab\u00bb\u201e\u2212\u017f\u212a\n\t"
)
claim_texts = st.lists(
    st.sampled_from(["http", "HTTPS", "://", "v1", "2026-01-02", "1.2.3"]) | claim_chars
).map("".join)


def check_same_matches_as_plain_pattern(text: str) -> None:
    def found(p: re.Pattern[str]) -> list[tuple[tuple[int, int], str | None, dict[str, str | None]]]:
        return [(m.span(), m.lastgroup, m.groupdict()) for m in p.finditer(text)]

    assert found(_CLAIM) == found(PLAIN_CLAIM)


test_same_matches_as_plain_pattern, test_same_matches_many = tiers(
    check_same_matches_as_plain_pattern, text=claim_texts | st.text(max_size=80)
)


@pytest.mark.parametrize(
    "hostile",
    ["0123456789abcdef" * 6400, "a_" * 50_000, "a." * 50_000, '"' * 100_000, "aB" * 50_000, "@a.a" * 25_000],
)
def test_linear_time_on_long_runs(hostile):
    t = time.process_time()
    find_claims(hostile)
    assert time.process_time() - t < 2.0


# ---- Sources, lazily built, against the plain implementation it replaced (kept here only, as reference) --


class RefSources:
    def __init__(self, values, keyed=()):
        texts: list[str] = []
        numbers: list[float] = []
        for v in values:
            _collect(v, texts, numbers, keys=False)
        for v in keyed:
            _collect(v, texts, numbers, keys=True)
        for t in texts:
            numbers.extend(x for n in find_numbers(t) for x in n.values)
        self.numbers = sorted(set(numbers))
        self.hay = "\n".join(normalize_query(t) for t in texts)
        self.hay_ascii = self.hay.isascii()
        self.urls = {_url_form(m.group(0)) for t in texts for m in URL.finditer(t)}

    def has_number(self, x: float) -> bool:
        tol = abs(x) * 1e-6 + 1e-9
        i = bisect_left(self.numbers, x - tol)
        return i < len(self.numbers) and self.numbers[i] <= x + tol

    def supports(self, c) -> bool:
        if c.kind in ("number", "version") and c.numbers:
            whole, *parts = c.numbers
            if any(map(self.has_number, whole)) or parts and all(any(map(self.has_number, p)) for p in parts):
                return True
            return occurs(normalize_query(c.text), self.hay, self.hay_ascii)
        if c.kind == "url":
            u = _url_form(c.text)
            return u in self.urls or any(s.startswith(u + "/") for s in self.urls)
        return occurs(normalize_query(c.text), self.hay, self.hay_ascii)


PIECES = [
    *("1,234.5", "28 280,96", "3.14", "2024", "2024 123", "v1.2.3", "2.098.190", "-5 %", "1e400", "0", "7"),
    *("12,5", "1.234", "10", "99.9%", "1" * 400, "２３", "٣", "2026-01-01"),
    *("Paris", "Zürich", "ß", "STRASSE", "max_pages", "web.crawl", "SyntaxError", '"Alpha  Guide"', "«x»"),
    *("https://a.com/x", "https://a.com/x/y.", "HTTPS://A.com/", "a@b.co", "\u00a0", "\n", " ", ".", "the"),
]
pieces_text = st.lists(st.sampled_from(PIECES), max_size=12).map(" ".join)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | pieces_text,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(pieces_text, kids, max_size=4),
    max_leaves=12,
)


def check_sources_support_what_the_plain_sources_did(values, more, keyed, text) -> None:
    base = Sources(values)
    everything = base.extended(more, keyed)
    ref_base, ref_all = RefSources(values), RefSources([*values, *more], keyed)
    for c in find_claims(text + " " + " ".join(str(v) for v in (values + more)[:3])):
        assert base.supports(c) == ref_base.supports(c), c
        assert everything.supports(c) == ref_all.supports(c), c
        # What _made_up relies on, but where a NaN disturbs the sorted numbers:
        assert everything.has_nan or not base.supports(c) or everything.supports(c), c
        assert Sources([*values, *more], keyed).supports(c) == ref_all.supports(c), c


test_sources_support_what_the_plain_sources_did, test_sources_support_many = tiers(
    check_sources_support_what_the_plain_sources_did,
    values=st.lists(json_values, max_size=4),
    more=st.lists(json_values, max_size=3),
    keyed=st.lists(json_values, max_size=2),
    text=pieces_text,
)


def check_normalized_lines(texts) -> None:
    assert _normalized_lines(texts) == "\n".join(normalize_query(t) for t in texts)


test_normalized_lines, test_normalized_lines_many = tiers(
    check_normalized_lines,
    texts=st.lists(
        st.text(st.characters(exclude_categories=()), max_size=40)
        | st.text(st.sampled_from(" \t\n\u00a0\u0301\u0308eEßΣς\x00\x1cAb"), max_size=12),
        max_size=6,
    ),
)
