"""Grounding: does an integration span contain a value of the tool results? (DESIGN.md section 4)

Pure functions. Lax: any result value (booleans and status keys never count) after NFC, case-fold and
whitespace collapse, numbers in any locale form, URLs by host and first path segment. Strict: only the
tool's declared evidence values, and only where the match starts and ends on token boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterator
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from kimi_student.numbers import as_number, find_numbers, numbers_equal
from kimi_student.privacy import URL
from kimi_student.tools.normalize import normalize_query
from kimi_student.tools.registry import registry

STATUS_KEYS = frozenset({"ok", "error", "status"})


class Value(NamedTuple):
    """One candidate piece of evidence: a number or a non-empty string. A named tuple, not a dataclass:
    values are hashed as cache keys many times per item, and a tuple hashes in C."""

    text: str  # normalised string form (the identity used for recall)
    number: float | None = None

    @property
    def url_key(self) -> tuple[str, str] | None:
        return url_key(self.text) if "://" in self.text else None


def url_key(url: str) -> tuple[str, str] | None:
    """(host, first path segment), or None where there is no host or the URL does not parse."""
    try:
        u = urlsplit(url)
        host = u.hostname
    except ValueError:  # `http://[oops`: a model may write anything
        return None
    if not host:
        return None
    seg = next((p for p in u.path.split("/") if p), "")
    return host.lower(), seg.casefold()


def make_value(v: Any) -> Value | None:
    n = as_number(v)
    if n is not None:
        return Value(repr(n), n)
    if isinstance(v, str):
        t = normalize_query(v)
        return Value(t) if t else None
    return None


def _leaves(obj: Any, key: str | None = None) -> Iterator[Any]:
    if key in STATUS_KEYS or isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v, key)
    else:
        yield obj


def result_values(results: list[dict[str, Any]]) -> list[Value]:
    """Every lax candidate of the tool results, de-duplicated in first-seen order."""
    seen: dict[str, Value] = {}
    for r in results:
        for leaf in _leaves(r.get("result", {})):
            # A multi-line text (a file, a page, program output) is quoted line by line, never whole.
            pieces = [leaf, *leaf.splitlines()] if isinstance(leaf, str) and "\n" in leaf else [leaf]
            for p in pieces:
                v = make_value(p)
                if v is not None:
                    seen.setdefault(v.text, v)
    return list(seen.values())


def _walk(obj: Any, parts: list[str]) -> Iterator[Any]:
    if not parts:
        if not isinstance(obj, (dict, list)):
            yield obj
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        yield from _leaves(obj)
        return
    is_list = head.endswith("[]")
    name = head[:-2] if is_list else head
    if not isinstance(obj, dict) or name in STATUS_KEYS or name not in obj:
        return
    sub = obj[name]
    for s in sub if is_list and isinstance(sub, list) else [sub] if not is_list else []:
        yield from _walk(s, rest)


def evidence_values(results: list[dict[str, Any]]) -> list[Value]:
    """The declared evidence values of each result, by the registry's evidence paths."""
    seen: dict[str, Value] = {}
    tools = registry()
    for r in results:
        tool = tools.get(r.get("name", ""))
        if tool is None:
            continue
        for ev in tool.evidence:
            for leaf in _walk(r.get("result", {}), ev.path.split(".")):
                if isinstance(leaf, bool) or leaf is None:
                    continue
                pieces = leaf.splitlines() if ev.mode == "lines" and isinstance(leaf, str) else [leaf]
                for p in pieces:
                    v = make_value(p.strip() if isinstance(p, str) else p)
                    if v is not None:
                        seen.setdefault(v.text, v)
    return list(seen.values())


@lru_cache(maxsize=65536)
def _string_pattern(text: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(w) for w in text.split(" "))
    return re.compile(
        r"(?<!\w)" + body + r"(?!\w)" if text[:1].isalnum() or text[-1:].isalnum() else body, re.IGNORECASE
    )


@lru_cache(maxsize=65536)
def _ascii_words(text: str) -> tuple[str, ...] | None:
    """The lower-cased words of `_string_pattern(text)`, where `text` is ASCII (else None). In an ASCII
    text that pattern can match only where each of them occurs as a substring of the lower-cased text
    (case-insensitive ASCII letters match only their own two cases), so a value whose words are not all
    there is refused without compiling or running its pattern."""
    return tuple(w.lower() for w in text.split(" ")) if text.isascii() else None


def _may_match(text: str, lowered: str | None) -> bool:
    """False only where `_string_pattern(text)` cannot match the text that `lowered` lower-cases
    (`lowered` is None where that text is not ASCII: no shortcut). For strict matching, on the span's own
    text (any blanks, any case)."""
    words = _ascii_words(text) if lowered is not None else None
    return words is None or all(w in lowered for w in words)  # type: ignore[operator]


def _ascii_search(text: str, hay: str) -> bool:
    """`_string_pattern(text).search(hay) is not None`, without the pattern, for an ASCII `text` and a
    normalize_query form `hay` that is ASCII: lower-case, its only blanks single spaces. There each `\\s+`
    of the pattern matches one space and its letters their lower case, so a match is an occurrence of
    `text.lower()`, where the pattern has them with no word character (letter, digit, `_`) either side."""
    needle = text.lower()
    edged = text[:1].isalnum() or text[-1:].isalnum()
    i = hay.find(needle)
    while i >= 0:
        j = i + len(needle)
        if not edged or not (i > 0 and _is_word(hay[i - 1]) or j < len(hay) and _is_word(hay[j])):
            return True
        i = hay.find(needle, i + 1)
    return False


_ASCII_BLANKS = frozenset(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f")  # what `\s` matches among ASCII characters


def _ascii_finditer(text: str, lowered: str) -> Iterator[tuple[int, int]]:
    r"""The (start, end) of each match of `_string_pattern(text)` in an ASCII text that `lowered`
    lower-cases, without compiling the pattern (one compile per value costs more than the scoring of an
    item), for an ASCII `text` of words joined by single spaces. In ASCII, `\w` is a letter, a digit or
    `_`, a letter matches its two cases only, and each `\s+` takes a whole run of blanks: the word after
    it cannot start with a blank, so giving one back never helps. A match starts where the first word
    occurs; the search goes on after a match, or one past an occurrence that is none."""
    first, *rest = text.lower().split(" ")
    edged = text[:1].isalnum() or text[-1:].isalnum()
    n = len(lowered)
    i = lowered.find(first)
    while i >= 0:
        end = _words_end(lowered, i + len(first), rest)
        if end >= 0 and not (
            edged and (i > 0 and _is_word(lowered[i - 1]) or end < n and _is_word(lowered[end]))
        ):
            yield i, end
            i = lowered.find(first, max(end, i + 1))
        else:
            i = lowered.find(first, i + 1)


def _words_end(lowered: str, pos: int, words: list[str]) -> int:
    """Where `words` end, each after a run of blanks, from `pos` on in `lowered`; -1 where they do not."""
    for word in words:
        j = pos
        while j < len(lowered) and lowered[j] in _ASCII_BLANKS:
            j += 1
        if j == pos or not lowered.startswith(word, j):
            return -1
        pos = j + len(word)
    return pos


def occurs(needle: str, hay: str, hay_ascii: bool) -> bool:
    """Whether `needle` occurs in `hay` at word edges, both normalize_query forms (`hay_ascii`:
    `hay.isascii()`, known to the caller that keeps `hay`)."""
    if hay_ascii and needle.isascii():
        return _ascii_search(needle, hay)
    return _string_pattern(needle).search(hay) is not None


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


def _url_matches(text: str) -> Iterator[tuple[re.Match[str], str]]:
    for m in URL.finditer(text):
        yield m, m.group(0).rstrip(".,;:")


class Span:
    """An integration span with its analyses cached: normalised text, numbers, URLs, and the answers it
    gave (a value is asked about more than once: against the gold spans, then for precision and recall).

    `text` must already be NFC (transcripts are normalised before scoring), so positions are exact."""

    def __init__(self, text: str, start: int = 0):
        self.text, self.start = text, start
        self.norm = normalize_query(text)
        self._norm_lower = self.norm.lower() if self.norm.isascii() else None
        self._text_lower = text.lower() if text.isascii() else None
        self.numbers = list(find_numbers(text))
        self.urls = [(m.start(), m.start() + len(u), normalize_query(u)) for m, u in _url_matches(text)]
        self.url_keys = {k for k in (url_key(u) for _, _, u in self.urls) if k}
        self._lax: dict[tuple[Value, bool], bool] = {}
        self._strict: dict[tuple[Value, int], tuple[Container[int], bool]] = {}

    def lax_contains(self, v: Value, url_by_host: bool = True) -> bool:
        # Equal values (text and number) get the same answer; `url_by_host` matters to URLs only.
        key = (v, url_by_host or "://" not in v.text)
        hit = self._lax.get(key)
        if hit is None:
            hit = self._lax[key] = self._lax_contains(v, url_by_host)
        return hit

    def _lax_contains(self, v: Value, url_by_host: bool) -> bool:
        if v.number is not None:
            return any(any(numbers_equal(x, v.number) for x in n.values) for n in self.numbers)
        vkey = v.url_key
        if vkey:  # a URL grounds by host and first path segment, or (literally) as the same URL
            return vkey in self.url_keys if url_by_host else any(u == v.text for _, _, u in self.urls)
        if self._norm_lower is not None and v.text.isascii():
            return _ascii_search(v.text, self._norm_lower)
        return _string_pattern(v.text).search(self.norm) is not None

    def strict_matches(self, v: Value) -> Iterator[tuple[int, int]]:
        """Character ranges (relative to the whole text) where `v` occurs in this span."""
        if v.number is not None:
            for n in self.numbers:
                if any(numbers_equal(x, v.number) for x in n.values):
                    yield self.start + n.start, self.start + n.end
            return
        if v.url_key:  # the whole URL, not a prefix of a longer one
            for s, e, u in self.urls:
                if u == v.text:
                    yield self.start + s, self.start + e
            return
        if not _may_match(v.text, self._text_lower):
            return
        if self._text_lower is not None and v.text.isascii() and v.text.split() == v.text.split(" "):
            for s, e in _ascii_finditer(v.text, self._text_lower):
                yield self.start + s, self.start + e
            return
        for m in _string_pattern(v.text).finditer(self.text):
            yield self.start + m.start(), self.start + m.end()

    def strict_contains(self, v: Value, bounds: Container[int]) -> bool:
        key = (v, id(bounds))  # the answer is kept with `bounds` itself: an id is reused once freed
        kept = self._strict.get(key)
        if kept is not None and kept[0] is bounds:
            return kept[1]
        hit = any(s in bounds and e in bounds for s, e in self.strict_matches(v))
        self._strict[key] = (bounds, hit)
        return hit
