"""Copy-constrained decoding of a Judge's check lines: every value it writes (an id, a date, a path, a sha, a
score) must be a copy of one in the case.

A small Judge decides most check lines right when it reads the right values (stops 45-50: 1,811 of 1,826
teacher-forced), but decoding freely it slips on a copy early (a spec id from training, a date with a digit
changed) and writes the rest off its training distribution. A value is a run of `[A-Za-z0-9_./*-]` that holds
a digit or a `/` and is not a short integer (a count, a sum, a rationale word's number: the oracle computes
those). The oracle's own lines write every such value as a whole run of the case
(`tests/unit/arbiter/test_judge_copying.py` holds that over generated sets), so the rule never forbids the
oracle's output: a value being written must start a run of the case, and one the Judge closes (a character
that is not a run's follows it) must be one. Where the Judge's most likely token would break that, the next
most likely token that keeps it is taken instead: each choice stays the model's (which value, which decision
word); only a value the case does not hold is out (a digit slipped, an id from training, a path cut short).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

RUN = re.compile(r"[A-Za-z0-9_./*-]+")
# counts, sums and rationale numbering: the oracle's arithmetic, not copies
_COMPUTED = re.compile(r"\d{1,3}")
_VALUE = re.compile(r"[\d/]")
TAIL = 32  # tokens decoded back to find the value being written (a path is ~10)
CANDIDATES = 64  # tokens tried, most likely first, before the model's own choice stands
_PIECES: dict[int, tuple[Any, dict[int, str]]] = {}  # each tokenizer's tokens as text, shared by its pickers


def token_text(tok: Any) -> Callable[[int], str]:
    """A token's text as `tok` decodes it alone, cached for every picker of that tokenizer."""
    if id(tok) not in _PIECES:
        _PIECES[id(tok)] = (tok, {})  # the tokenizer is held so that its id is not reused
    pieces = _PIECES[id(tok)][1]

    def piece(t: int) -> str:
        if t not in pieces:
            pieces[t] = tok.decode([t], skip_special_tokens=False)
        return pieces[t]

    return piece


def is_value(run: str) -> bool:
    return bool(_VALUE.search(run)) and not _COMPUTED.fullmatch(run)


class CopyRule:
    """The runs of a case's text; `allows(before, piece)`: whether writing `piece` after `before` keeps every
    value it touches (the one `before` ends in, extended, and any it starts) the start of a run of the case,
    and every one it closes a whole run. `cut`: `before` is the tail of a longer text, so a run at its start
    may be the end of a value (held to be inside a run, or to end one where closed)."""

    def __init__(self, source: str):
        self.source = "\n" + "\n".join(RUN.findall(source)) + "\n"

    def holds(self, value: str, start: bool = True, end: bool = False) -> bool:
        return ("\n" * start + value + "\n" * end) in self.source

    def allows(self, before: str, piece: str, cut: bool = False) -> bool:
        text = before + piece
        for m in RUN.finditer(text):
            value = m.group()
            if m.end() < len(before) or not is_value(value):
                continue  # closed before this piece (held then), or no value
            if not self.holds(value, start=not (cut and m.start() == 0), end=m.end() < len(text)):
                return False
        return True


def copy_picker(tok: Any, prompt: list[int]) -> Callable[[list[int], Any], int]:
    """A greedy step for one row (`greedy_decode`'s `pick`): the most likely token the case's `CopyRule`
    allows after the row's tokens so far, or the most likely one where none of the first CANDIDATES is."""
    rule = CopyRule(tok.decode(prompt, skip_special_tokens=True))
    piece = token_text(tok)

    def pick(row: list[int], logits: Any) -> int:
        top = int(logits.argmax())
        before = tok.decode(row[-TAIL:], skip_special_tokens=False)
        cut = len(row) > TAIL
        if rule.allows(before, piece(top), cut):
            return top
        for t in logits.topk(CANDIDATES).indices.tolist():
            if rule.allows(before, piece(t), cut):
                return int(t)
        return top

    return pick
