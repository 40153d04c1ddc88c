"""Copy augmentation: training items whose values are swapped for other training values, in every place
they occur, so that the new combination was never seen and the only way to predict a value is to copy it
from the context (the request, an earlier tool response). The toy swaps the words of its first call's
arguments (recipes/toy_data.py); the Worker swaps whole conversations (`augmented_conversation`): request,
calls, tool responses and answer. Fresh values come from the training items only, so no held-out value
is ever drawn (DESIGN.md "Held-out split"); the recipe's disjointness check covers the copies too. The
scenarios whose results are computed from the request (COMPUTED) are redrawn instead
(`contextual.redrawn`: same stratum and kind, new operands, the calls run again): a teacher that saw each
subtotal once restated held-out subtotals in the locale with a digit lost or moved ("23 724,57" for
237245.17), 8 of its 16 hallucinating items.

`words="invented"` swaps request words for words no item holds and no value pool of the world has, in
either split (syllables drawn by the seed): with the training items' own words a model
still sees the same few setting keys and topics thousands of times, and on held-out items writes the
one it knows (`PAGE_SIZE` for `TIMEOUT_SECONDS`, `rate-limint` for `rate-limiting`) instead of copying.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kimi_student.chat.prompt import item_messages
from kimi_student.chat.transcript import parse_transcript, to_byte_spans
from kimi_student.data import world
from kimi_student.data.contextual import copy_id, redrawn
from kimi_student.data.disjoint import EXEMPT
from kimi_student.data.world import value_split
from kimi_student.eval.score.tool_span import leaves
from kimi_student.numbers import format_number

WORD = re.compile(r"[A-Za-z0-9]+")
# A number of 3+ digits standing alone: not part of a word, a decimal, a version, a date or a time.
_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?<![0-9][.,:-])[0-9]{3,}(?![0-9A-Za-z])(?![.,:-][0-9])")
_HOST_OR_EMAIL = re.compile(r"://[^/\s\"]+|[\w.+-]+@[\w.-]+")
# Their tool results are computed from the request (a subtotal, a program's output): numbers stay.
COMPUTED = ("arithmetic", "code_run")
# A word in more than this share of the training items' request words is the task's wording, not a value.
STRUCTURE_SHARE = 0.10


def string_leaves(value: Any) -> Iterator[str]:
    return (v for _, v, _ in leaves(value) if isinstance(v, str))


def map_leaves(value: Any, fn: Callable[[Any], Any]) -> Any:
    """`value` with `fn` applied to every leaf (not to dict keys)."""
    if isinstance(value, dict):
        return {k: map_leaves(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_leaves(v, fn) for v in value]
    return fn(value)


def word_kind(word: str) -> str:
    return "upper" if word.isupper() else "lower" if word.islower() else "other"


def word_re(words: Iterable[str], numbers: Iterable[str] = ()) -> re.Pattern[str]:
    """Whole words only, longest first: `config` in a path, not inside `configure`. `numbers` (digits,
    or a locale's spelling of them) also stand alone: `742`, not inside `4.742` or `1,742`."""

    def alts(values: Iterable[str]) -> str:
        return "|".join(map(re.escape, sorted(values, key=len, reverse=True)))

    words, numbers = list(words), list(numbers)
    parts = [r"(?<![A-Za-z0-9])(?:" + alts(words) + r")(?![A-Za-z0-9])"] if words else []
    if numbers:
        parts.append(
            r"(?<![0-9A-Za-z])(?<![0-9][.,\u202f])(?:"
            + alts(numbers)
            + r")(?![0-9A-Za-z])(?![.,\u202f][0-9])"
        )
    return re.compile("|".join(parts))


def _request(item: dict[str, Any]) -> str:
    return item_messages(item, "request")[0]["content"]


def request_words(item: dict[str, Any]) -> set[str]:
    """Words of the calls' string arguments that the request states: not a schema enum or a limit (the
    EXEMPT keys), not a URL's scheme, not a word with a digit (numbers are `result_numbers`' job)."""
    req = set(WORD.findall(_request(item)))
    return {
        w
        for call in item["metadata"]["call_sequence"]
        for v in _fact_leaves(call["arguments"])
        if isinstance(v, str)
        for w in WORD.findall(v)
        if w in req and f"{w}://" not in v and w.isalpha()
    }


def _fact_leaves(value: Any) -> Iterator[Any]:
    """The leaves of a tool result, except under the structural keys (data/disjoint.py EXEMPT)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in EXEMPT:
                yield from _fact_leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _fact_leaves(v)
    else:
        yield value


def result_numbers(item: dict[str, Any]) -> set[str]:
    """Numbers of 3+ digits the item's tools return (as JSON numbers or inside strings) and the request
    does not state; none for the scenarios whose results are computed from the request."""
    meta = item["metadata"]
    if meta["scenario"] in COMPUTED:
        return set()
    found: set[str] = set()
    for done in meta["tool_results"]:
        for v in _fact_leaves(done["result"]):
            if isinstance(v, int) and not isinstance(v, bool) and v >= 100:
                found.add(str(v))
            elif isinstance(v, str):
                found.update(_NUMBER.findall(v))
    return found - set(_NUMBER.findall(_request(item)))


_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
WORD_SOURCES = ("training", "invented")
NUMBER_SOURCES = ("training", "fresh")
# Every word of the world's value pools, training and held-out parts alike: never an invented word.
_POOLS = (world.SUBJECTS, world.ASPECTS, world.HOSTS, world.EMPTY_QUERY_WORDS, world.PACKAGES, world.DIRS)
WORLD_WORDS = frozenset(
    w.casefold()
    for values in (*_POOLS, world.FILES, world.SETTINGS, world.EMAILS)
    for v in values
    for w in WORD.findall(v)
)


def invented_word(w: str, rng: random.Random) -> str:
    """A made-up word about as long as `w`, in its case (upper, lower, or capitalised otherwise)."""
    syllables = max(1, round(len(w) / 2.5) + rng.randint(-1, 1))
    v = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
    return v.upper() if word_kind(w) == "upper" else v if word_kind(w) == "lower" else v.capitalize()


class ValuePool:
    """The training items' swappable values: request words by shape, result numbers by digit count.
    Words in more than STRUCTURE_SHARE of the items are the task's wording and are never swapped.
    `words_from`: where a fresh word comes from, the training items (`training`) or `invented_word`.
    `numbers_from`: where a fresh number comes from, the training items' results of its digit count
    (`training`), or a random number of that many digits on the training side of the value split (`fresh`):
    a scenario whose results come from a small registry (api_lookup: ten download counts in all of
    training) otherwise never shows the student another number to write in the locale's grouping."""

    def __init__(
        self, items: list[dict[str, Any]], words_from: str = "training", numbers_from: str = "training"
    ):
        if words_from not in WORD_SOURCES:
            raise ValueError(f"words_from must be one of {WORD_SOURCES}, not {words_from!r}")
        if numbers_from not in NUMBER_SOURCES:
            raise ValueError(f"numbers_from must be one of {NUMBER_SOURCES}, not {numbers_from!r}")
        self.words_from, self.numbers_from = words_from, numbers_from
        per_item = [request_words(it) for it in items]
        df = Counter(w for ws in per_item for w in ws)
        self.structure = {w for w, n in df.items() if n > STRUCTURE_SHARE * len(items)}
        words: dict[str, set[str]] = {}
        for w in df.keys() - self.structure:
            words.setdefault(word_kind(w), set()).add(w)
        numbers: dict[int, set[str]] = {}
        for it in items:
            for n in result_numbers(it):
                if value_split(n) == "train":
                    numbers.setdefault(len(n), set()).add(n)
        self.words = {k: sorted(v) for k, v in sorted(words.items())}
        self.not_new = {w.casefold() for w in df} | WORLD_WORDS  # what an invented word may not be
        self.numbers = {k: sorted(v) for k, v in sorted(numbers.items())}

    def values(self) -> set[str]:
        return {v for pool in (*self.words.values(), *self.numbers.values()) for v in pool}

    def fresh_word(self, w: str, rng: random.Random, taken: set[str]) -> str | None:
        if self.words_from == "invented":
            for _ in range(20):  # a word some item holds, or one of the held-out part, is drawn again
                v = invented_word(w, rng)
                if v not in taken and v.casefold() not in self.not_new:
                    return v
            return None
        options = [v for v in self.words.get(word_kind(w), []) if v not in taken]
        return rng.choice(options) if options else None

    def fresh_number(self, n: str, rng: random.Random, taken: set[str]) -> str | None:
        if self.numbers_from == "fresh":
            for _ in range(20):  # ~1 in HELDOUT_SHARE numbers is a held-out value: drawn again
                v = str(rng.randint(10 ** (len(n) - 1), 10 ** len(n) - 1))
                if v not in taken and value_split(v) == "train":
                    return v
            return None
        options = [v for v in self.numbers.get(len(n), []) if v not in taken]
        return rng.choice(options) if options else None


def _key_words(item: dict[str, Any]) -> set[str]:
    """Words never swapped: JSON keys of the item's calls and results and JSON's literals (the protocol;
    `false` is also a word of a subject, "bloom filter false positives"), and the words of URL hosts and
    e-mail addresses anywhere in the item (the privacy gate allows only the hosts and addresses the world
    has: a copy with an invented host taught the student to invent hosts)."""
    meta = item["metadata"]
    text = item["prompt"] + "\n" + item["teacher_text"]
    found = {"true", "false", "null"} | {w for m in _HOST_OR_EMAIL.findall(text) for w in WORD.findall(m)}
    todo: list[Any] = [c["arguments"] for c in meta["call_sequence"]] + [
        r["result"] for r in meta["tool_results"]
    ]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            found.update(w for k in v for w in WORD.findall(k))
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
    return found


def swap_table(item: dict[str, Any], rng: random.Random, pool: ValuePool) -> dict[str, str]:
    """old value -> fresh training value, for the item's request words (with their title-case and
    upper-case forms, as tool results write them) and result numbers (with the locale's spelling)."""
    words = sorted(request_words(item) - pool.structure - _key_words(item))
    numbers = sorted(result_numbers(item))
    taken = set(words) | set(numbers)
    table: dict[str, str] = {}
    for w in words:
        v = pool.fresh_word(w, rng, taken)
        if v is not None:
            table[w] = v
            if w.islower() and v.islower():
                table[w[:1].upper() + w[1:]] = v[:1].upper() + v[1:]
                table[w.upper()] = v.upper()
    locale = item["metadata"]["locale"]
    for n in numbers:
        m = pool.fresh_number(n, rng, taken)
        if m is not None:
            table[n] = m
            table[format_number(int(n), locale)] = format_number(int(m), locale)
    return {k: v for k, v in table.items() if k != v}


def augmented_conversation(
    item: dict[str, Any], rng: random.Random, pool: ValuePool, copy: int = 0
) -> dict[str, Any] | None:
    """The item with its values swapped (`swap_table`) in the prompt, the gold calls, the tool results
    and the teacher text alike; None when it has nothing to swap, or when the swap would break a call's
    JSON or lose an integration span."""
    if not item["metadata"]["call_sequence"]:
        return None
    if item["metadata"]["scenario"] in COMPUTED:  # new operands, results computed again
        return redrawn(item, copy)
    table = swap_table(item, rng, pool)
    if not table:
        return None
    rx = word_re([k for k in table if not k[:1].isdigit()], [k for k in table if k[:1].isdigit()])

    def sub(text: str) -> str:
        return rx.sub(lambda m: table[m.group(0)], text)

    def leaf(v: Any) -> Any:
        if isinstance(v, str):
            return sub(v)
        if isinstance(v, int) and not isinstance(v, bool) and str(v) in table:
            return int(table[str(v)])
        return v

    meta = item["metadata"]
    text = sub(item["teacher_text"])
    new_meta = {
        **meta,
        "call_sequence": [
            {**c, "arguments": map_leaves(c["arguments"], leaf)} for c in meta["call_sequence"]
        ],
        "tool_results": [{**r, "result": map_leaves(r["result"], leaf)} for r in meta["tool_results"]],
    }
    t, old = parse_transcript(text), parse_transcript(item["teacher_text"])
    calls = [{"name": c.name, "arguments": c.arguments} for c in t.calls if c.error is None]
    gold = [{"name": c["name"], "arguments": c["arguments"]} for c in new_meta["call_sequence"]]
    if calls != gold or len(t.spans) != len(old.spans):
        return None
    new_meta["integration_spans_bytes"] = to_byte_spans(text, t.spans)
    return {
        **item,
        "id": copy_id(item["id"], copy),
        "prompt": sub(item["prompt"]),
        "teacher_text": text,
        "metadata": new_meta,
    }


def augmented_set(
    items: list[dict[str, Any]],
    copies: int,
    seed: int,
    words_from: str = "training",
    computed_copies: int | None = None,
    numbers_from: str = "training",
) -> tuple[list[dict[str, Any]], ValuePool]:
    """`copies` augmented versions of each training item that has values to swap (`computed_copies`, if
    given, redrawn versions of each COMPUTED item instead), and the pool drawn from."""
    rng, pool = random.Random(seed), ValuePool(items, words_from, numbers_from)

    def count(it: dict[str, Any]) -> int:
        computed = it["metadata"]["scenario"] in COMPUTED
        return computed_copies if computed and computed_copies is not None else copies

    out = [c for it in items for k in range(count(it)) if (c := augmented_conversation(it, rng, pool, k))]
    return out, pool
