"""Tool-span micro-F1: how much of the expected tool call an emitted call gets right, pair by pair.

A call is a bag of (key, value) pairs: the tool name is one pair (`.` and `_` alike, as in call_match),
and every argument leaf is one pair, its key the flattened path (`filters.site`, `paths[0]`) and its
value normalised as call_match compares values: path fields canonicalised (`normalize_path`), `uri`
fields canonicalised (`normalize_url`), other strings NFC + case-fold + whitespace-collapsed, numbers as
floats (an int equals the same float). Schema defaults are not filled in: only pairs a call states count.

Per item, TP = pairs in both bags (multiset intersection), FP = emitted pairs not expected, FN = expected
pairs not emitted. An item without a parsable emitted call scores all its expected pairs as FN. Counts
are pooled over items and F1 = 2·TP / (2·TP + FP + FN) (micro). Pure functions.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kimi_student.errors import ArgumentError
from kimi_student.tools.normalize import normalize_path, normalize_query, normalize_url
from kimi_student.tools.registry import registry

Pair = tuple[str, str]
_INDEX = re.compile(r"\[\d+\]")


def leaves(
    value: Any, path: str = "", schema: dict[str, Any] | None = None
) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(flattened path, leaf value, the leaf's schema); an empty object or list is itself a leaf."""
    schema = schema or {}
    if isinstance(value, dict) and value:
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, dict) else {})
            yield from leaves(v, f"{path}.{k}" if path else str(k), sub)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]", schema.get("items", {}))
    else:
        yield path, value, schema


def _norm_value(value: Any, schema: dict[str, Any], path_field: bool) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        try:
            return repr(float(value))
        except OverflowError:  # an integer past the float range: itself
            return repr(value)
    if isinstance(value, (dict, list)):  # only empty ones reach here
        return "{}" if isinstance(value, dict) else "[]"
    text = str(value)
    try:
        if path_field:
            return normalize_path(text)
        if schema.get("format") == "uri":
            return normalize_url(text)
    except ArgumentError:  # a path or URL that does not canonicalise is compared as plain text
        return unicodedata.normalize("NFC", text)
    return normalize_query(text)


def call_pairs(call: dict[str, Any] | None) -> Counter[Pair]:
    """The (key, value) pairs of one call {name, arguments}; empty for None or a call without a name."""
    if not call or not isinstance(call.get("name"), str):
        return Counter()
    name = call["name"]
    pairs: Counter[Pair] = Counter({("<name>", name.replace(".", "_")): 1})
    tool = registry().get(name) or next(
        (t for n, t in registry().items() if n.replace(".", "_") == name.replace(".", "_")), None
    )
    schema = tool.parameters if tool else {}
    path_fields = set(tool.path_fields) if tool else set()
    args = call.get("arguments")
    if isinstance(args, dict):
        for key, value, sub in leaves(args, "", schema):
            is_path = (_INDEX.sub("[]", key) if "[" in key else key) in path_fields  # `paths[0]`: `paths[]`
            pairs[(key, _norm_value(value, sub, is_path))] += 1
    elif args is not None:  # arguments that are not an object: one pair that matches nothing expected
        pairs[("<arguments>", repr(args))] += 1
    return pairs


@dataclass(frozen=True)
class SpanCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: SpanCounts) -> SpanCounts:
        return SpanCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """None when there is nothing to score (no expected and no emitted pairs)."""
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else None

    def to_json(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def pair_counts(gold: Counter[Pair], got: Counter[Pair]) -> SpanCounts:
    """TP = pairs in both bags (multiset intersection), FP = the rest of `got`, FN = the rest of `gold`."""
    tp = sum((gold & got).values())
    return SpanCounts(tp, sum(got.values()) - tp, sum(gold.values()) - tp)


def score_call(expected: dict[str, Any], emitted: dict[str, Any] | None) -> SpanCounts:
    """Counts for one item; `emitted` None (no parsable call) makes every expected pair a FN."""
    return pair_counts(call_pairs(expected), call_pairs(emitted))


def micro(counts: Iterable[SpanCounts]) -> SpanCounts:
    total = SpanCounts()
    for c in counts:
        total = total + c
    return total
