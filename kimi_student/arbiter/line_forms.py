"""Line-constrained decoding of a Judge's check lines: each line must take one of the forms the training
targets' lines take, its copied parts copied from the case.

Under `copying.py`'s value rule a 135M Judge still leaves parts of a line out (a budget waiver's delta and
approvers), writes a held-out wording's word where the target's goes (`for=`) or a rationale where a check
goes (stop 55): the errors that decide its worksheets are not slips of a value but lines off their form. A
*form* is a training line with what it copies from its case made a slot: `<S...>` for a run of the case of
the kind the training run was (`<S-9A>` an id, `<S./a>` a path; `<S>` a numbered rationale word, whatever it
is), `<S+>` for a text of the case of several runs (a date, in whatever wording), `<N>` for a short integer
(counts, sums, numbering: the oracle's arithmetic). The target's own words (`keywords`: those the lines of
>= KEYWORD_SHARE of training cases write outside what they copy: `after`, `for`, a gate's name) stay words of
the form, so a gate's line keeps its own parts. Decoding, a check line must be the prefix of a form with a run
of the case of the slot's kind in each `<S...>`, a text of the case in each `<S+>` (from a run's start to a
run's end, not begun or ended inside a number's text: a date's zone cannot be left out) and <= 3 digits in
each `<N>`, and may close only as a whole form. So a line is never cut short or out of form and copies nothing
the case lacks; which form (`ok` or the broken rule's, `after` or `not after`) and which span stay the model's
choices, each token the most likely one allowed. The 4,000 training cases of stop 55's set (`judge data
--seed 0 --train-pairs 500 --line-drills 12000`) give 102 forms, and the rule holds every one of the 9,926
lines of the oracle's targets for its 600 held-out cases (new wordings and seeds), and of its 67,310 training
lines.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kimi_student.arbiter.copying import CANDIDATES, RUN, CopyRule, is_value, token_text
from kimi_student.arbiter.line_drills import ASK_LINES
from kimi_student.errors import InputError

# slot symbols (a form is a tuple of single characters and these): a run of the case, a text of the case of
# several runs (a date), a short integer
SPAN, SPANS, NUMBER = "<S>", "<S+>", "<N>"
KEYWORD_SHARE = 0.02
_SMALL = re.compile(r"\d{1,3}")
_RUN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./*-")
# a text of several runs (a date) neither starts right after a number joined to it nor ends right before one:
# `2026-08-28 16:00:00` of `2026-08-28 16:00:00 +00:00` is no span (the zone left out), nor `Nov 2027 14:00`
# of `10 Nov 2027 14:00 UTC`
_AFTER_NUMBER = re.compile(r"\d(?: |:| \+|\+)$")
_NUMBER_GOES_ON = re.compile(r"(?: |:| \+|\+)\d")
_NUMBERED = re.compile(r"\(\d{1,3}\)")  # a rationale word's number: the word is a copy, whatever it is
HEAD = '{"checks": ['
Form = tuple[str, ...]


def kind_of(run: str) -> str:
    """What a run is made of (lower, upper, digits, each of `_./*-`): a run slot holds runs of the kinds its
    training runs had (`WV-8119` is `-9A`, a path `./a`), so that an id's slot takes no word of the case."""
    return "".join(
        sorted({"a" if c.islower() else "A" if c.isupper() else "9" if c.isdigit() else c for c in run})
    )


def _copied(line: str, runs: list[re.Match[str]], case: CaseSpans) -> set[int]:
    """The runs of `line` inside a text of the case that holds a value (a date with its month and zone, an
    id): the runs the line copies, whatever they are."""
    out: set[int] = set()
    for k, m in enumerate(runs):
        if k in out or not is_value(m.group()) or not case.run(m.group(), whole=True):
            continue
        i = j = k
        while i > 0 and line[runs[i - 1].start() : runs[j].end()] in case.text:
            i -= 1
        while j + 1 < len(runs) and line[runs[i].start() : runs[j + 1].end()] in case.text:
            j += 1
        out.update(range(i, j + 1))
    return out


def keywords(cases: Iterable[tuple[CaseSpans, list[str]]]) -> frozenset[str]:
    """The targets' own words: the runs that the lines of >= KEYWORD_SHARE of cases write outside what they
    copy (`_copied`), numbers apart (`for`, `after`, a gate's name; not a month a date is written with)."""
    seen: Counter[str] = Counter()
    n = 0
    for case, lines in cases:
        n += 1
        own = set()
        for line in lines:
            runs = list(RUN.finditer(line))
            copied = _copied(line, runs, case)
            own.update(m.group() for k, m in enumerate(runs) if k not in copied)
        seen.update(own)
    return frozenset(r for r, c in seen.items() if c >= KEYWORD_SHARE * n and not _SMALL.fullmatch(r))


def line_form(line: str, case: CaseSpans, words: frozenset[str]) -> Form:
    """`line` with what it copies from the case made slots (see the module's docstring): a span starts at a
    run that is not a target's own word and runs on, over no own word, as far as the case writes the same."""
    runs = list(RUN.finditer(line))
    out: list[str] = []
    pos = i = 0
    while i < len(runs):
        m = runs[i]
        run = m.group()
        out.extend(line[pos : m.start()])
        numbered = _NUMBERED.match(line, m.end()) is not None and case.allows(run, whole=True)
        j = k = i
        while (
            not numbered
            and k + 1 < len(runs)
            and runs[k + 1].group() not in words
            and case.allows(line[m.start() : runs[k + 1].end()], whole=False)
        ):
            k += 1  # the case writes the same up to here
            if case.allows(line[m.start() : runs[k].end()], whole=True):
                j = k  # the longest span of the case the line copies from here
        copied = case.allows(line[m.start() : runs[j].end()], whole=True) and any(
            not _SMALL.fullmatch(r.group()) for r in runs[i : j + 1]
        )
        if numbered or (copied and run not in words):
            out.append(SPANS if j > i else f"<S{kind_of(run)}>" if not numbered else SPAN)
            pos, i = runs[j].end(), j + 1
        else:
            out.append(NUMBER if _SMALL.fullmatch(run) else run)
            if out[-1] == run:
                out[-1:] = list(run)
            pos, i = m.end(), i + 1
    out.extend(line[pos:])
    return tuple(out)


class LineForms:
    """The forms of a set of training lines, as a trie of their symbols."""

    def __init__(self, forms: Iterable[Form]):
        self.forms = sorted(set(forms))
        self.children: list[dict[str, int]] = [{}]
        self.ends: list[bool] = [False]
        for form in self.forms:
            node = 0
            for sym in form:
                if sym not in self.children[node]:
                    self.children[node][sym] = len(self.children)
                    self.children.append({})
                    self.ends.append(False)
                node = self.children[node][sym]
            self.ends[node] = True
        # each node's run slots (symbol, child) and the symbol each run slot's child was reached by
        self.runs: list[list[tuple[str, int]]] = [
            [(sym, kid) for sym, kid in kids.items() if sym.startswith("<S") and sym != SPANS]
            for kids in self.children
        ]
        self.kinds: dict[int, str] = {kid: sym for slots in self.runs for sym, kid in slots}

    @classmethod
    def from_cases(cls, cases: Iterable[tuple[str, list[str]]]) -> LineForms:
        """Forms from (prompt, check lines) of whole training cases."""
        spans = [(CaseSpans(prompt), lines) for prompt, lines in cases]
        words = keywords(spans)
        return cls(line_form(line, case, words) for case, lines in spans for line in lines)

    @classmethod
    def from_training(cls, path: Path) -> LineForms:
        """Forms from an audit training set (`train_audit_sft.jsonl`): every row whose target is check lines
        read in a prompt that holds their values (whole cases, group questions, drills); line drills apart
        (their prompt is one fixed question) and pairs (no check lines)."""
        if not path.is_file():
            raise InputError(path, None, "line forms", "no such file: the audit training set of the Judge")
        cases = []
        with path.open(encoding="utf-8") as f:
            for n, raw in enumerate(f, 1):
                try:
                    row = json.loads(raw)
                    if row.get("__header__"):
                        continue
                    target = json.loads(row["teacher_text"])
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                    raise InputError(path, n, "teacher_text", f"not an audit training row: {e}") from None
                if not (isinstance(target, dict) and isinstance(target.get("checks"), list)):
                    continue
                if not isinstance(prompt := row.get("prompt"), str):
                    raise InputError(path, n, "prompt", "a row of check lines without its prompt text")
                if prompt != ASK_LINES:
                    cases.append((prompt, [str(x) for x in target["checks"]]))
        if not cases:
            raise InputError(path, None, "teacher_text", "no case with check lines: not an audit set")
        return cls.from_cases(cases)


class CaseSpans:
    """What a slot may hold in one case: its runs, its texts (memoised: a decode asks the same ones often)."""

    def __init__(self, text: str):
        self.text = text
        self.starts = {m.start() for m in RUN.finditer(text)}
        self.ends_at = {m.end() for m in RUN.finditer(text)}
        self.copies = CopyRule(text)
        by_kind: dict[str, list[str]] = {}
        for r in dict.fromkeys(RUN.findall(text)):
            by_kind.setdefault(kind_of(r), []).append(r)
        self.of_kind = {k: CopyRule(" ".join(rs)) for k, rs in by_kind.items()}  # the runs of each kind
        self._memo: dict[tuple[str, bool], bool] = {}

    def allows(self, s: str, whole: bool) -> bool:
        """`s` a text of the case from a run's start (to a run's end: `whole`)."""
        key = (s, whole)
        if key not in self._memo:
            self._memo[key] = self._verbatim(s, whole)
        return self._memo[key]

    def run(self, s: str, whole: bool, slot: str = SPAN) -> bool:
        """`s` a run of the case (`whole`) or the start of one; of the kind run slot `slot` holds."""
        copies = self.copies if slot == SPAN else self.of_kind.get(slot[2:-1])
        return copies is not None and copies.holds(s, end=whole)

    def _verbatim(self, s: str, whole: bool) -> bool:
        several = not RUN.fullmatch(s)  # a text of several runs: not begun or ended inside a number's text
        i = self.text.find(s)
        while i >= 0:
            e = i + len(s)
            if i in self.starts and not (several and _AFTER_NUMBER.search(self.text, max(0, i - 3), i)):
                if not whole or (e in self.ends_at and not (several and _NUMBER_GOES_ON.match(self.text, e))):
                    return True
            i = self.text.find(s, i + 1)
        return False


# a matcher state: (trie node, 0 at a symbol boundary | 1 in a run | 2 in a number | 3 in a text of several
# runs, where the slot began)
State = tuple[int, int, int]


class LineRule:
    """Whether a Judge's output so far keeps its check lines in form: `advance(state, text)` the state after
    `text` (None: out of form). The head `{"checks": [` and at least one line are held too; after the list
    closes, anything goes (the ruling: `ruling.py`'s grammar rules an invalid one)."""

    def __init__(self, forms: LineForms, case: str):
        self.forms, self.spans = forms, CaseSpans(case)

    def start(self) -> tuple[Any, ...]:
        return ("head", 0)

    def advance(self, state: tuple[Any, ...] | None, text: str) -> tuple[Any, ...] | None:
        for ch in text:
            if state is None:
                return None
            state = self._char(state, ch)
        return state

    def _char(self, state: tuple[Any, ...], ch: str) -> tuple[Any, ...] | None:
        phase = state[0]
        if phase == "free":
            return state
        if phase == "head":
            k = state[1]
            if k < len(HEAD):
                return ("head", k + 1) if ch == HEAD[k] else None
            return ("line", frozenset({(0, 0, 0)}), "") if ch == '"' else None  # a worksheet has lines
        if phase == "line":
            states, line = state[1], state[2]
            if ch == '"':
                return ("sep", 0) if self._accepts(states, line) else None
            nxt = self._step(states, line, ch)
            return ("line", nxt, line + ch) if nxt else None
        k = state[1]  # sep: `, "` opens the next line, `]` closes the list
        if k == 0 and ch == "]":
            return ("free",)
        if ch == ', "'[k]:
            return ("line", frozenset({(0, 0, 0)}), "") if k == 2 else ("sep", k + 1)
        return None

    def _enter(self, node: int, ch: str, i: int) -> set[State]:
        kids = self.forms.children[node]
        out: set[State] = set()
        if ch in kids:
            out.add((kids[ch], 0, 0))
        for sym, kid in self.forms.runs[node]:
            if ch in _RUN_CHARS and self.spans.run(ch, whole=False, slot=sym):
                out.add((kid, 1, i))
        if SPANS in kids and ch in _RUN_CHARS and self.spans.allows(ch, whole=False):
            out.add((kids[SPANS], 3, i))
        if NUMBER in kids and ch.isdigit():
            out.add((kids[NUMBER], 2, i))
        return out

    def _step(self, states: frozenset[State], line: str, ch: str) -> frozenset[State]:
        i = len(line)
        out: set[State] = set()
        for node, kind, start in states:
            if kind == 0:
                out |= self._enter(node, ch, i)
                continue
            if kind == 1:
                if ch in _RUN_CHARS and self.spans.run(line[start:] + ch, False, self.forms.kinds[node]):
                    out.add((node, 1, start))
                if ch not in _RUN_CHARS and self._whole_run(node, line[start:]):
                    out |= self._enter(node, ch, i)
            elif kind == 3:
                if self.spans.allows(line[start:] + ch, whole=False):
                    out.add((node, 3, start))
                if ch not in _RUN_CHARS and line[-1] in _RUN_CHARS and self.spans.allows(line[start:], True):
                    out |= self._enter(node, ch, i)
            else:
                if ch.isdigit() and i - start < 3:
                    out.add((node, 2, start))
                if ch not in _RUN_CHARS:
                    out |= self._enter(node, ch, i)
        return frozenset(out)

    def _whole_run(self, node: int, run: str) -> bool:
        return self.spans.run(run, whole=True, slot=self.forms.kinds[node])

    def _accepts(self, states: frozenset[State], line: str) -> bool:
        for node, kind, start in states:
            if not self.forms.ends[node]:
                continue
            if kind == 1 and not self._whole_run(node, line[start:]):
                continue
            if kind == 3 and not (line[-1] in _RUN_CHARS and self.spans.allows(line[start:], whole=True)):
                continue
            return True
        return False

    def holds(self, line: str) -> bool:
        """Whether one whole check line is in form (what the picker lets a line close as)."""
        state = self.advance(("head", len(HEAD)), '"' + line + '"')
        return state is not None and state[0] == "sep"


def line_picker(tok: Any, forms: LineForms, prompt: list[int]) -> Callable[[list[int], Any], int]:
    """A greedy step for one row (`greedy_decode`'s `pick`): the most likely token after which the row's
    output is still in form (`LineRule`); once out of form (no token keeps it: the forms do not cover what
    was written), the model's own choices."""
    rule = LineRule(forms, tok.decode(prompt, skip_special_tokens=True))
    piece = token_text(tok)
    seen: list[int] = []  # the row's tokens the state has read
    at: list[tuple[Any, ...] | None] = [rule.start()]

    def pick(row: list[int], logits: Any) -> int:
        if row[: len(seen)] != seen:  # not the row read so far: read it from its start
            seen.clear()
            at[0] = rule.start()
        for t in row[len(seen) :]:
            at[0] = rule.advance(at[0], piece(t))
            seen.append(t)
        state = at[0]
        top = int(logits.argmax())
        if state is None or state[0] == "free" or rule.advance(state, piece(top)) is not None:
            return top
        for t in logits.topk(CANDIDATES).indices.tolist():
            if rule.advance(state, piece(t)) is not None:
                return int(t)
        first: dict[str, bool] = {}  # whether a piece may start with this character here
        for t in logits.argsort(descending=True).tolist():
            text = piece(t)
            if not text:
                continue
            if text[0] not in first:
                first[text[0]] = rule.advance(state, text[0]) is not None
            if first[text[0]] and rule.advance(state, text) is not None:
                return int(t)
        return top

    return pick
