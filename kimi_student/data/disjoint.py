"""Held-out honesty, checked on real files: no value a held-out item's calls use or its tools return occurs
in the training set (DESIGN.md "Held-out split"), so no held-out answer can come from memory.

A held-out item's value atoms are the leaves of its gold calls' arguments and of its tool results: each
string line (stripped, case-folded; a multi-line content gives one atom a line) and each number, except
under the structural keys of EXEMPT, which carry no fact an answer states. An atom leaks when it equals an
atom of a training item, or, for a string of at least SUBSTRING_MIN characters, when it occurs inside a
training item's prompt or teacher text (case-insensitive, beginning and ending at word edges: "855625" is
not in "21855625"): a training text that quotes a held-out value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

# Keys whose values are structure, not facts, with why. Everything else is an atom.
EXEMPT: dict[str, str] = {
    "ok": "success flag",
    "rank": "a result's position",
    "start_line": "line numbers",
    "line": "line numbers",
    "line_count": "a count of lines",
    "total": "a count of matches",
    "status_code": "HTTP status",
    "exit_code": "process status",
    "error": "the tools' fixed error messages",
    "stderr": "the sandbox's fixed error messages",
    "bytes_written": "a length, computed from the content (whose lines are atoms)",
    "value": "math.eval's result, computed from the expression (an atom)",
    "top_k": "a limit the call sets",
    "max_results": "a limit the call sets",
    "max_pages": "a limit the call sets",
    "max_lines": "a limit the call sets",
    "precision": "a rounding the call sets",
    "timeout_s": "a limit the call sets",
    "lang": "a schema enum",
    "recency": "a schema enum",
    "mode": "a schema enum",
    "encoding": "a schema enum",
    "newline": "a schema enum",
    "language": "a schema enum",
    "include": "a schema enum",
    "params": "the registry API's fixed query fields",
    "headers": "the registry API's fixed headers",
}
SUBSTRING_MIN = 6
_WORD = re.compile(r"[0-9a-z]+")


def _atoms(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in EXEMPT:
                yield from _atoms(v, f"{where}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from _atoms(v, where)
    elif isinstance(value, str):
        for line in value.splitlines():
            if line.strip():
                yield line.strip().casefold(), where
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield repr(value), where


def value_atoms(item: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(atom, where) for every value atom of an item's gold calls and tool results."""
    meta = item["metadata"]
    for i, (call, done) in enumerate(zip(meta["call_sequence"], meta["tool_results"]), start=1):
        yield from _atoms(call["arguments"], f"call {i} {call['name']} arguments")
        yield from _atoms(done["result"], f"call {i} {call['name']} result")


class TrainingMemory:
    """What a model trained on `items` has seen: their atoms, and their prompts and teacher texts."""

    def __init__(self, items: Iterable[dict[str, Any]]):
        self.atoms: set[str] = set()
        texts = []
        for it in items:
            self.atoms.update(a for a, _ in value_atoms(it))
            texts += [it["prompt"], it["teacher_text"]]
        self.text = "\n".join(texts).casefold()
        self.words = set(_WORD.findall(self.text))

    def has(self, atom: str) -> bool:
        if atom in self.atoms:
            return True
        if len(atom) < SUBSTRING_MIN or not all(w in self.words for w in _WORD.findall(atom)):
            return False  # a word of the atom the training text never has as a word: it cannot hold it
        at = self.text.find(atom)
        while at >= 0:  # only where the atom begins and ends at word edges ("855625" is not in "21855625")
            end = at + len(atom)
            before = self.text[at - 1 : at] if at else ""
            if not (_edge_joins(before, atom[0]) or _edge_joins(self.text[end : end + 1], atom[-1])):
                return True
            at = self.text.find(atom, at + 1)
        return False


def _edge_joins(outside: str, inside: str) -> bool:
    """Whether the text next to a match continues the word the atom starts or ends with."""
    return bool(outside) and outside.isalnum() and inside.isalnum()


def leaks(heldout: Iterable[dict[str, Any]], memory: TrainingMemory) -> list[str]:
    """'ID: WHERE VALUE' for each held-out atom the training set holds, in item order."""
    found, seen = [], set()
    for it in heldout:
        for atom, where in value_atoms(it):
            if atom not in seen:
                seen.add(atom)
                if memory.has(atom):
                    found.append(f"{it['id']}: {where} {atom!r}")
    return found
