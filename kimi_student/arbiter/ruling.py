"""Constrained decoding of a Judge's ruling: the part of a verdict after its checks (violated clauses, status,
rationale), decoded greedily over the valid rulings only.

A small Judge often ends its check lines with a ruling that is no verdict (stop 48: 35 of 50 verdicts of a
135M audit Judge unreadable, a clause listed once per broken line, statuses listed as clauses). The ruling is a choice
among few texts: every status, every set of clauses in canonical order (none for PASS, some for the others),
every clause waived or not (all for WAIVER_REQUIRED, not all for FAIL), the rationale naming them as the
training targets do: 243 texts. Each is written after what the Judge wrote before its ruling (its complete
check lines, `worksheet`), tokenized whole as in training, and the Judge decodes greedily with every token
not on one of those texts masked: each choice is the model's (its most likely allowed token); no choice is
the oracle's. The result is schema-valid by construction. The free output is kept and scored for raw
validity; only an output that is not a valid verdict is ruled again this way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

from kimi_student.arbiter.cases import status_winner
from kimi_student.arbiter.documents import CLAUSES
from kimi_student.arbiter.judge_data import ruling_fields
from kimi_student.arbiter.verdict import STATUSES, verdict_problems

CHECKS_OPEN = '{"checks": ['
_ITEM = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*(,|\])')


def _rulings() -> tuple[tuple[str, tuple[str, ...], frozenset[str]], ...]:
    """Every valid (status, violated clauses in canonical order, waived clauses): PASS with none;
    WAIVER_REQUIRED with some, all waived; FAIL with some, not all waived."""
    out: list[tuple[str, tuple[str, ...], frozenset[str]]] = [("PASS", (), frozenset())]
    for k in range(1, len(CLAUSES) + 1):
        for clauses in combinations(CLAUSES, k):
            for j in range(k + 1):
                for waived in combinations(clauses, j):
                    status = "WAIVER_REQUIRED" if j == k else "FAIL"
                    out.append((status, clauses, frozenset(waived)))
    return tuple(out)


RULINGS = _rulings()  # 243: PASS, and 3 ** 5 - 1 clause sets each clause of which is waived or not


def ruling_text(checks: list[str] | None, status: str, clauses: Sequence[str], waived: frozenset[str]) -> str:
    """A verdict as the training targets write it (`judge_data.ruling_fields`): after the checks (an audit
    Judge: violated clauses, status, rationale) or alone (status first), the rationale naming each clause
    waived or violated."""
    fields = ruling_fields(
        {"status": status, "violated_clauses": list(clauses), "waived_clauses": list(waived)}
    )
    if checks is None:
        fields = {k: fields[k] for k in ("status", "violated_clauses", "rationale")}
        return json.dumps(fields, ensure_ascii=False)
    return json.dumps({"checks": checks, **fields}, ensure_ascii=False)


def worksheet(text: str, looped: bool = False) -> list[str] | None:
    """The complete check lines an output opens with (None: it does not open a checks list). `looped`: the
    output was cut as a loop, so its lines end before the first line written a second time."""
    if not text.startswith(CHECKS_OPEN):
        return None
    items: list[str] = []
    pos = len(CHECKS_OPEN)
    if text[pos:].lstrip().startswith("]"):
        return items
    while m := _ITEM.match(text, pos):
        try:
            item = json.loads(f'"{m.group(1)}"')
        except json.JSONDecodeError:
            break
        if looped and item in items:
            break
        items.append(item)
        if m.group(2) == "]":
            break
        pos = m.end()
    return items


_FATE = re.compile(r" -> (" + "|".join(CLAUSES) + r") (blocking|waived by )")


def implied_ruling(checks: Sequence[str]) -> tuple[str, tuple[str, ...], frozenset[str]]:
    """The ruling the fates at the ends of `checks` imply, as the oracle rules from its findings: a clause
    with a blocking fate or one waived is violated, waived when none of its fates blocks; FAIL when one
    blocks, WAIVER_REQUIRED when some are waived and none blocks, else PASS (warnings and skipped gates
    violate nothing)."""
    blocking, waived = set(), set()
    for line in checks:
        for clause, how in _FATE.findall(line):
            (blocking if how == "blocking" else waived).add(clause)
    violated = tuple(c for c in CLAUSES if c in blocking | waived)
    status = "FAIL" if blocking else "WAIVER_REQUIRED" if violated else "PASS"
    return status, violated, frozenset(waived - blocking)


def constrained_choice(
    next_logits: Callable[[list[int]], Any], base: list[int], suffixes: Sequence[Sequence[int]]
) -> int:
    """Greedy decoding after `base` restricted to `suffixes` (token lists, none a prefix of another): at each
    token where the suffixes still alive part, the allowed token the model scores highest (ties: the lower
    id); where they agree, their token. Returns the index of the suffix written."""
    live = list(range(len(suffixes)))
    path: list[int] = []
    while True:
        ended = [i for i in live if len(suffixes[i]) == len(path)]
        if ended:
            if len(live) > 1:
                raise ValueError("a constrained suffix is a prefix of another")
            return ended[0]
        allowed = sorted({suffixes[i][len(path)] for i in live})
        if len(allowed) == 1:
            tok = allowed[0]
        else:
            logits = next_logits(base + path)
            tok = max(allowed, key=lambda t: (float(logits[t]), -t))
        path.append(tok)
        live = [i for i in live if suffixes[i][len(path) - 1] == tok]


def shared_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every one of `seqs` shares."""
    common = 0
    while all(len(s) > common and s[common] == seqs[0][common] for s in seqs):
        common += 1
    return common


def continuations(chat: Any, prompt: str, texts: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """`texts` written after the user turn `prompt`, each tokenized whole: (the prompt's ids and the tokens all
    texts share, each text's remaining tokens)."""
    seqs = [chat.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    common = shared_prefix(seqs)
    base = chat.prompt_ids([{"role": "user", "content": prompt}]) + seqs[0][:common]
    return base, [s[common:] for s in seqs]


def _decode_among(gen: Any, prompt: str, texts: Sequence[str]) -> str | None:
    """The one of `texts` (none a prefix of another) that greedy decoding restricted to them writes after
    `prompt`; None when the prompt and the longest text do not fit the generator's context."""
    base, rests = continuations(gen.chat, prompt, texts)
    if len(base) + max(map(len, rests)) >= gen.context:
        return None
    return texts[constrained_choice(gen.next_logits, base, rests)]


def rule_constrained(gen: Any, prompt: str, output: str, looped: bool = False) -> str | None:
    """The Judge's verdict on `prompt` with its ruling decoded under the grammar, after the check lines its
    free `output` completed; None when the case and verdict do not fit the Judge's context (as the free
    decode, the model could not read it). `gen`: a generator with `chat`, `context` and `next_logits`."""
    checks = worksheet(output, looped)
    chosen = _decode_among(gen, prompt, [ruling_text(checks, *r) for r in RULINGS])
    assert chosen is None or not verdict_problems(json.loads(chosen))  # by construction
    return chosen


# A direct pair's rulings as its targets write them: the winner alone, or each candidate's status and the
# winner those statuses give (the reasoned and audit targets' form); the Judge's greedy choice picks the form.
PAIR_RULINGS = tuple(json.dumps({"winner": w}) for w in ("a", "b", "tie")) + tuple(
    json.dumps({"a": a, "b": b, "winner": status_winner(a, b)}) for a in STATUSES for b in STATUSES
)


def rule_pair_constrained(gen: Any, prompt: str) -> str | None:
    """A direct pair's ruling decoded greedily over `PAIR_RULINGS` only; None where it does not fit."""
    return _decode_among(gen, prompt, PAIR_RULINGS)
