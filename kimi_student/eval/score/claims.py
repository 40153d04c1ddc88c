"""Claims: the checkable statements of an answer, and whether a source supports them (DESIGN.md section 4).

A claim is a number, a date, a version, a URL, an email address, a quoted string or a name (a path or
dotted name, an identifier with `_`, a CamelCase or long all-capitals word, a word of letters and digits
such as `0x1f` or `sha256` (not an ordinal), a capitalised word inside a sentence) written in the model's own text. Every claim is found in one left-to-right pass of one pattern
whose alternatives can only start at the start of a run (linear time on any text); the first alternative
that matches at a position wins, so a number inside a URL, a path or a quote is part of that claim, not
one of its own.

A claim is supported when the sources state it: a number equal (relative tolerance 1e-6, any locale
form) to a number of a source, or written the same; a URL equal to a source's URL or a path prefix of one;
anything else when its normalised text (NFC, case-fold, blanks collapsed) occurs in a source's text at word
edges. Pure functions: no files, no clocks.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any, NamedTuple

from kimi_student.eval.score.grounding import occurs
from kimi_student.numbers import NUMBER_RE, find_numbers
from kimi_student.privacy import URL
from kimi_student.tools.normalize import normalize_query

QUOTE_MAX = 400  # a longer "quote" is not one quotation, and bounds the scan of an unclosed quote mark
_ALTERNATIVES = (
    rf"(?P<url>{URL.pattern})",
    r"(?P<email>(?<![\w.%+-])[\w.%+-]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)+)",
    rf'"(?P<q1>[^"\n]{{1,{QUOTE_MAX}}})"',
    rf"\u201c(?P<q2>[^\u201d\n]{{1,{QUOTE_MAX}}})\u201d",
    rf"\u00ab\s?(?P<q3>[^\u00bb\n]{{1,{QUOTE_MAX}}}?)\s?\u00bb",
    rf"\u201e(?P<q4>[^\u201c\u201d\n]{{1,{QUOTE_MAX}}})[\u201c\u201d]",
    r"(?P<date>(?<![\w.-])\d{4}-\d{2}-\d{2}(?![\w-]))",
    r"(?P<version>(?<![\w.])v?\d+(?:\.\d+){2,}(?![\w]|\.\d))",
    rf"(?P<number>{NUMBER_RE.pattern})",
    r"(?P<path>(?<![\w./-])[\w-]++(?:[./][\w-]++)+)",
    r"(?P<ident>\b(?=\w*?[_A-Z\d])(?:\w+_\w+|[A-Za-z]*[a-z][A-Z]\w*|[A-Z]{5,}\d*|\w*(?:\d[A-Za-z]|[A-Za-z]\d)\w*)\b)",
    r"(?P<word>\b[A-Z][a-z]+\b)",
)
# Where a claim can start, tried before the alternatives (most positions fail it at once): a URL's `h`, a
# quote mark, or, after no word character (every other alternative looks behind for one, or a `\b`), a
# character one of them can start with. Possessive runs where giving back a character can never help
# (the next token is a character outside the run), and a name (`ident`) only in a word holding one of
# the characters each of its forms needs: the same matches as without them (test_claims.py), in half
# the time.
_CLAIM = re.compile(r"(?=[hH\"\u201c\u00ab\u201e]|(?<!\w)[\w.%+\-\u2212])(?:" + "|".join(_ALTERNATIVES) + ")")
_SENTENCE_END = frozenset(".!?:;\n")
_LIST_MARK = re.compile(r"[ \t]*(?:[.)])[ \t]")  # "1. " or "2) " after a number at a line's start
_QUOTES = ("q1", "q2", "q3", "q4")
_ORDINAL = re.compile(r"\d+(?:st|nd|rd|th)")
_PATH_SEP = re.compile(r"[./]")
_BLANKS = re.compile(r"\s+")  # as normalize_query collapses them


class Claim(NamedTuple):  # a named tuple: built for every match, and a tuple is built in C
    kind: str  # url | email | quote | date | version | number | name
    text: str  # as written (a quote without its quote marks)
    start: int  # character range of `text` in the scanned text (plus the caller's offset)
    end: int
    # A number's readings: the whole, then each part where blanks may group or separate ("28 280,96").
    numbers: tuple[frozenset[float], ...] = ()


def find_claims(text: str, offset: int = 0) -> list[Claim]:
    """Every claim of `text`, in order, positions shifted by `offset`."""
    out: list[Claim] = []
    for m in _CLAIM.finditer(text):
        kind = m.lastgroup or ""
        if kind.startswith("q"):
            kind = "quote"
            g = next(q for q in _QUOTES if m.group(q) is not None)
            s, e = m.span(g)
        else:
            s, e = m.span()
        raw = text[s:e]
        if kind == "url":
            raw = raw.rstrip(".,;:!?")
            e = s + len(raw)
        elif kind == "number":
            if _list_marker(text, s, e):
                continue
            out.append(Claim(kind, raw, s + offset, e + offset, _number_readings(raw)))
            continue
        elif kind == "version":
            out.append(Claim(kind, raw, s + offset, e + offset, _version_readings(raw)))
            continue
        elif kind == "path" and not _is_name(raw):
            continue
        elif kind == "word" and (raw == "I" or _sentence_initial(text, s)) or _ordinal(raw):
            continue
        if kind in ("path", "ident", "word"):
            kind = "name"
        if raw.strip():
            out.append(Claim(kind, raw, s + offset, e + offset))
    return out


@lru_cache(maxsize=16384)
def _number_readings(raw: str) -> tuple[frozenset[float], ...]:
    """A number claim's readings (Claim.numbers): a pure function of its text, and the same numbers come
    back again and again."""
    return tuple(n.values for n in find_numbers(raw))


@lru_cache(maxsize=16384)
def _version_readings(raw: str) -> tuple[frozenset[float], ...]:
    """`2.098.190` is also a number as de-DE groups it, `4.9.12` is not."""
    whole = [n.values for n in find_numbers(raw) if n.start == 0 and n.end == len(raw)]
    return tuple(whole[:1])


def _ordinal(raw: str) -> bool:
    # An ordinal starts with a decimal digit (`\d`, what str.isdecimal says): the regex only for those.
    return raw[:1].isdecimal() and _ORDINAL.fullmatch(raw) is not None


def _is_name(raw: str) -> bool:
    """A path or dotted name, not an abbreviation (`e.g`) nor a run of hyphenated words without a letter."""
    parts = _PATH_SEP.split(raw)
    return any(c.isalpha() or c == "_" for c in raw) and ("/" in raw or any(len(p) > 1 for p in parts[1:]))


def _list_marker(text: str, s: int, e: int) -> bool:
    line_start = text.rfind("\n", 0, s) + 1
    return not text[line_start:s].strip() and _LIST_MARK.match(text, e) is not None


def _sentence_initial(text: str, s: int) -> bool:
    """True where the word at `s` begins a sentence, a line, a quotation or a bracket."""
    i = s - 1
    while i >= 0 and text[i] in " \t\"'(\u201c\u00ab\u201e*-":
        i -= 1
    return i < 0 or text[i] in _SENTENCE_END


class Sources:
    """What may support a claim: the texts and numbers of some JSON values (tool results, a prompt), and
    of `keyed` ones with their object keys too (call arguments: a claim may name an argument), indexed once
    per item. A result's keys support nothing: a key is the tool's format, not something it said.

    Built lazily, for speed: the JSON numbers at once; the texts' normalised form and URLs on the first
    claim that needs them; the numbers written inside the texts (the costly part) only for a number claim
    that neither a JSON number nor a literal occurrence supports. `extended` adds sources to these and
    reuses what was computed for them."""

    def __init__(self, values: Iterable[Any], keyed: Iterable[Any] = (), base: Sources | None = None):
        texts: list[str] = []
        numbers: list[float] = []
        # Whether `values` hold an integer too large for a float (written out among the texts instead).
        self.huge_int = False
        for v in values:
            self.huge_int |= _collect(v, texts, numbers, keys=False)
        for v in keyed:
            _collect(v, texts, numbers, keys=True)
        self._base = base
        self._texts = texts if base is None else [*base._texts, *texts]
        self._own_texts = texts
        self._collected = numbers if base is None else [*base._collected, *numbers]
        self._values = sorted(set(self._collected))
        # A NaN (JSON allows it) makes the sorted order depend on the list: then all numbers go in one list,
        # in the order they always did, and are searched as one.
        self._nan = any(x != x for x in self._collected)
        self._written: list[float] | None = None
        self._hay: tuple[str, bool] | None = None
        self._urls: set[str] | None = None

    def extended(self, values: Iterable[Any], keyed: Iterable[Any] = ()) -> Sources:
        """These sources and more: the same as Sources(these values and `values`, these keyed and `keyed`)."""
        return Sources(values, keyed, base=self)

    @property
    def has_nan(self) -> bool:
        """Whether a JSON number is NaN: then numbers are searched in one list, whose sorted order the NaN
        disturbs, and more sources may support less."""
        return self._nan

    def _haystack(self) -> tuple[str, bool]:
        """The texts' normalize_query forms, one a line, in order; and whether that is ASCII."""
        if self._hay is None:
            own = _normalized_lines(self._own_texts)
            base = self._base
            if base is not None and base._texts:
                own = base._haystack()[0] + "\n" + own if self._own_texts else base._haystack()[0]
            self._hay = own, own.isascii()
        return self._hay

    @property
    def hay(self) -> str:
        return self._haystack()[0]

    @property
    def urls(self) -> set[str]:
        if self._urls is None:
            own = {_url_form(m.group(0)) for t in self._own_texts for m in URL.finditer(t)}
            self._urls = own if self._base is None else self._base.urls | own
        return self._urls

    def _written_numbers(self) -> list[float]:
        """Every reading of the numbers written in the texts, sorted (with a NaN: all numbers, as one list)."""
        if self._written is None:
            if self._nan:
                written = [x for t in self._texts for n in find_numbers(t) for x in n.values]
                self._written = sorted(set(self._collected + written))
            else:
                own = {x for t in self._own_texts for n in find_numbers(t) for x in n.values}
                if self._base is not None:
                    own.update(self._base._written_numbers())
                self._written = sorted(own)
        return self._written

    def has_number(self, x: float) -> bool:
        return not self._nan and _near(self._values, x) or _near(self._written_numbers(), x)

    def occurs(self, text: str) -> bool:
        """Whether `text` (a normalize_query form) occurs in the texts at word edges."""
        return occurs(text, *self._haystack())

    def supports(self, c: Claim) -> bool:
        if c.kind in ("number", "version") and c.numbers:
            # Every part of a blank-grouped run ("in 2024 123 items") or the whole, or the literal digits;
            # the cheap tests first (a JSON number, the literal), the numbers inside the texts last.
            whole, *parts = c.numbers
            if not self._nan and any(_near(self._values, x) for x in whole):
                return True
            if self.occurs(normalize_query(c.text)):
                return True
            return (
                any(map(self.has_number, whole))
                or bool(parts)
                and all(any(map(self.has_number, p)) for p in parts)
            )
        if c.kind == "url":
            u = _url_form(c.text)
            return u in self.urls or any(s.startswith(u + "/") for s in self.urls)
        return self.occurs(normalize_query(c.text))


def _normalized_lines(texts: list[str]) -> str:
    """ "\\n".join(normalize_query(t) for t in texts), normalised in one pass: the texts joined by NUL
    (where none holds one), a character that no NFC composition or reordering crosses, that case-folds
    to itself and is no blank, so each text normalises as alone but for the blanks next to a NUL,
    collapsed to one space there and then taken away as strip() takes them from each text."""
    joined = "\0".join(texts)
    if joined.count("\0") != max(0, len(texts) - 1):
        return "\n".join(normalize_query(t) for t in texts)
    folded = _BLANKS.sub(" ", unicodedata.normalize("NFC", joined).casefold())
    return folded.replace(" \0", "\0").replace("\0 ", "\0").strip(" ").replace("\0", "\n")


def _near(numbers: list[float], x: float) -> bool:
    """Whether sorted `numbers` hold one within a relative 1e-6 (absolute 1e-9) of `x`."""
    tol = abs(x) * 1e-6 + 1e-9
    i = bisect_left(numbers, x - tol)
    return i < len(numbers) and numbers[i] <= x + tol


def _collect(v: Any, texts: list[str], numbers: list[float], keys: bool) -> bool:
    """Every string (and, with `keys`, every object key) and number of a JSON value; whether one of its
    integers was too large for a float."""
    huge = False
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, bool) or x is None:
            continue
        if isinstance(x, str):
            texts.append(x)
        elif isinstance(x, (int, float)):
            try:
                numbers.append(float(x))
            except OverflowError:  # an integer too large for a float is written out instead
                texts.append(str(x))
                huge = True
        elif isinstance(x, dict):
            if keys:
                texts.extend(str(k) for k in x)
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return huge


def _url_form(url: str) -> str:
    return normalize_query(url.rstrip(".,;:!?")).rstrip("/")


def unsupported(claims: Iterable[Claim], sources: Sources) -> Iterator[Claim]:
    return (c for c in claims if not sources.supports(c))
