"""Numbers as people write them in different locales: formatting (generator) and parsing (scorer).

Parsing is tolerant on purpose: "1.234" is 1234 in de-DE and 1.234 in en-US, so a written number
yields every reading it admits and a match against any of them counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

LOCALES = ("en-US", "de-DE", "fr-FR", "en-IN")
_GROUP_SPACES = " \u00a0\u202f"  # space, no-break space, narrow no-break space (fr-FR)

# A written number: digits with optional group separators and one decimal part, optional percent.
NUMBER_RE = re.compile(
    r"(?<![\w.,])[-+−]?\d{1,3}(?:(?:[,.'\u00a0\u202f ]\d{2,3})+)?(?:[.,]\d+)?(?:\s?%)?(?![\w])"
    r"|(?<![\w.,])[-+−]?\d+(?:[.,]\d+)?(?:\s?%)?(?![\w])"
)
# Compiled here, not looked up in `re`'s cache on each call (the scorer's patterns flood that cache).
_NON_DIGIT = re.compile(r"\D")
_NON_DIGIT_SPLIT = re.compile(r"[^\d]")
_PART = re.compile(r"\d+(?:[.,]\d+)?")


def _group_int(digits: str, sep: str, indian: bool) -> str:
    if len(digits) <= 3:
        return digits
    head, tail = digits[:-3], digits[-3:]
    size = 2 if indian else 3
    groups = []
    while head:
        groups.insert(0, head[-size:])
        head = head[:-size]
    return sep.join(groups + [tail])


def format_number(value: float | int, locale: str, decimals: int | None = None) -> str:
    """Write `value` the way `locale` does (grouping and decimal separator). Without `decimals`, as many
    as the shortest repr has, 1 to 6 (`1e-07` has 7: written 0.000000). ValueError for NaN or infinity."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r} has no written form")
    if decimals is None:
        decimals = 0 if float(value).is_integer() else min(6, max(1, _repr_decimals(float(value))))
    sign = "-" if value < 0 else ""
    fixed = f"{abs(value):.{decimals}f}"
    int_part, _, frac = fixed.partition(".")
    group, dec = {"en-US": (",", "."), "de-DE": (".", ","), "fr-FR": ("\u202f", ","), "en-IN": (",", ".")}[
        locale
    ]
    out = _group_int(int_part, group, indian=locale == "en-IN")
    return sign + out + (dec + frac if frac else "")


def _repr_decimals(x: float) -> int:
    """Digits after the point in repr(x) (`1.25` -> 2; with an exponent, `1e-07` -> 7, `1.5e-05` -> 6)."""
    r = repr(x)
    if "e" not in r:
        return len(r.split(".")[1])
    exp = Decimal(r).as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def _readings(body: str) -> set[float]:
    """Every value a digits-and-separators string can mean."""
    out: set[float] = set()
    seps = [c for c in body if not c.isdigit()]
    if not seps:
        return {float(body)}
    last = max(body.rfind(","), body.rfind("."))
    # Reading 1: the last ',' or '.' is the decimal separator, everything else groups.
    if last >= 0 and body.count(body[last]) == 1:
        int_part = _NON_DIGIT.sub("", body[:last])
        frac = body[last + 1 :]
        if int_part and frac.isdigit():
            out.add(float(f"{int_part}.{frac}"))
    # Reading 2: every separator groups (an integer), if the groups look like groups.
    parts = _NON_DIGIT_SPLIT.split(body)
    if all(len(p) in (2, 3) for p in parts[1:]) and parts[-1] and len(parts[-1]) == 3:
        out.add(float("".join(parts)))
    return out


@dataclass(frozen=True)
class WrittenNumber:
    start: int
    end: int
    values: frozenset[float]


def find_numbers(text: str) -> Iterator[WrittenNumber]:
    """Written numbers in `text` with their character positions and every reading (percent too)."""
    for m in NUMBER_RE.finditer(text):
        raw = m.group(0)
        pct = raw.rstrip().endswith("%")
        body = raw.rstrip("% \u00a0\u202f").replace("−", "-")
        sign = -1.0 if body.startswith("-") else 1.0
        body = body.lstrip("+-")
        vals = {sign * v for v in _readings(body)}
        if pct:
            vals |= {v / 100.0 for v in vals}
        if vals:
            yield WrittenNumber(m.start(), m.end(), frozenset(vals))
        # Space-grouped runs may be two numbers side by side ("in 2024 123 items"): offer the parts too.
        if any(c in _GROUP_SPACES for c in body):
            offset = m.start() + (len(raw) - len(raw.lstrip("+-−")))
            for pm in _PART.finditer(body):
                vs = _readings(pm.group(0))
                if vs:
                    yield WrittenNumber(offset + pm.start(), offset + pm.end(), frozenset(vs))


def numbers_equal(a: float, b: float, rel_tol: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def as_number(value: object) -> float | None:
    """A JSON value that is a number (not a boolean), as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
