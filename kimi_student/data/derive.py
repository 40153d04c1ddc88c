"""Derivable gold calls: every argument of a gold call follows from the request and the tool responses
before it (DESIGN.md "Derivable gold calls"), so a student that reads the item can write the call.

An argument value is derivable when
- a string: it occurs, case-insensitively, in the request or in an earlier tool response;
- a number: a number written in the request or an earlier response reads as it (any locale's reading);
- a composed string (a math expression, a program, a file's content, COMPOSED): every number in it is
  derivable as above or is one of the constants the request's wording implies (WORDING_CONSTANTS: 'doubled'
  is 2, 'annualised' from a quarter is 4, 'a day' from a week is 7, a percentage is over 100, 1 + rate);
  the rest of such a string is the call's own syntax, which the task teaches.
Exceptions, named here and nowhere else:
- a value that equals the schema default (a call without it means the same);
- an argument the gold call's `accept` lets a call leave out (may_omit): a call without it is as right;
- the capped field of a range-violation item at the schema's maximum (the request asks for more; the
  tool's schema says the most it takes);
- booleans (flags; none of the generator's carries a value the answer states).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from kimi_student.chat.transcript import parse_transcript
from kimi_student.numbers import find_numbers, numbers_equal
from kimi_student.tools.registry import get_tool

COMPOSED = frozenset({("math.eval", "expression"), ("code.execute", "code"), ("file.write", "content")})
WORDING_CONSTANTS = (1.0, 2.0, 4.0, 7.0, 100.0)


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, path)
    else:
        yield path, value


@lru_cache(maxsize=1024)  # the registry's schemas do not change: read them, never change them
def _schema_at(name: str, path: str) -> dict[str, Any]:
    schema: dict[str, Any] = get_tool(name).parameters
    for part in path.split("."):
        schema = schema.get("properties", {}).get(part) or {}
    return schema


class _Known:
    """What a call can draw on: the request, and the teacher text before the call (the earlier calls and
    their responses); numbers read from it only when a number is asked about."""

    def __init__(self, request: str, teacher_text: str):
        self.request, self.text = request.lower(), teacher_text
        self.end, self._read, self._numbers = 0, -1, []
        self._low, self._low_end = "", 0

    def has_text(self, value: str) -> bool:
        v = value.lower()
        if v in self.request:
            return True
        if self._low_end != self.end:  # the text before the call, lowered when first asked
            self._low, self._low_end = self.text[: self.end].lower(), self.end
        return v in self._low

    def has_written(self, number: str) -> bool:
        """`number` as written, not inside a longer run of digits: most numbers of a call are copied."""
        for text, end in ((self.request, len(self.request)), (self.text, self.end)):
            at = text.find(number, 0, end)
            while at >= 0:
                after = at + len(number)
                if not (at and text[at - 1].isdigit()) and not (after < len(text) and text[after].isdigit()):
                    return True
                at = text.find(number, at + 1, end)
        return False

    def has_number(self, x: float) -> bool:
        """`x` is a reading of a number written in the known text (find_numbers, each part read once: the
        request, then the text between call starts, where no number is cut)."""
        if self._read < 0:
            self._numbers += [v for w in find_numbers(self.request) for v in w.values]
            self._read = 0
        if self._read < self.end:
            self._numbers += [v for w in find_numbers(self.text[self._read : self.end]) for v in w.values]
            self._read = self.end
        return x in self._numbers or any(numbers_equal(x, y) for y in self._numbers)

    def upto(self, end: int) -> None:
        self.end = end


def _derivable(name: str, path: str, value: Any, known: _Known) -> bool:
    if isinstance(value, str):
        if known.has_text(value):
            return True
        return (name, path) in COMPOSED and _numbers_derivable(value, known)
    return known.has_written(str(value)) or known.has_number(float(value))


def _numbers_derivable(value: str, known: _Known) -> bool:
    """Every number written in `value` reads as a known number or a wording constant (the parts find_numbers
    also offers of a space-grouped number count with the whole)."""
    covered = -1
    for w in find_numbers(value):
        if w.start < covered:
            continue
        if not (
            any(numbers_equal(v, c) for v in w.values for c in WORDING_CONSTANTS)
            or known.has_written(value[w.start : w.end])
            or any(known.has_number(v) for v in w.values)
        ):
            return False
        covered = w.end
    return True


def underivable_argument(item: dict[str, Any], call_starts: list[int] | None = None) -> str | None:
    """The first gold-call argument of `item` that does not follow from its request and what comes before
    the call in its teacher text (module docstring), as 'call N tool.argument=value', or None.
    `call_starts`: where each call begins in the teacher text (parse_transcript's), if known."""
    meta, text = item["metadata"], item["teacher_text"]
    if call_starts is None:
        call_starts = [c.start for c in parse_transcript(text).calls]
    known = _Known(item["prompt"].rsplit("User: ", 1)[-1], text)
    adv = meta.get("adversarial") or {}
    capped = adv.get("field") if adv.get("kind") == "range_violation" else None
    for i, (call, start) in enumerate(zip(meta["call_sequence"], call_starts), start=1):
        name = call["name"]
        known.upto(start)
        omit = {k for k, rule in (call.get("accept") or {}).items() if rule.get("may_omit")}
        for path, value in _leaves(call["arguments"], ""):
            if isinstance(value, bool) or value is None or path.split(".", 1)[0] in omit:
                continue
            schema = _schema_at(name, path)
            if ("default" in schema and schema["default"] == value) or (
                path == capped and schema.get("maximum") == value
            ):
                continue
            if not _derivable(name, path, value, known):
                return f"call {i} {name}.{path}={value!r}"
    return None
