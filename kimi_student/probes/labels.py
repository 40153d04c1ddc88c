"""Process-step labels of a training example's tokens (pure).

A token of an assistant turn is inside a tool name, inside a call's JSON arguments, inside an integration
span (a sentence that states a tool's result) or other; a token of a call (its name through its arguments)
also has the call's tool. Labels sit at the tokens' own positions in the sequence: the example's spans are
already moved by each turn's offset (`ExampleBuilder.conversation`), never counted from the sequence start.

A probe reads the hidden state that *writes* a token: the state at position t - 1, whose logits predict
token t. So `probe_rows` pairs each labelled token t with position t - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kimi_student.train.examples import Example

STEPS = ("other", "tool_name", "json_args", "integration")
NO_TOOL = -1


@dataclass(frozen=True)
class TokenLabels:
    positions: np.ndarray  # (n,) int: the hidden-state positions (t - 1) that write the labelled tokens t
    step: np.ndarray  # (n,) int: index into STEPS
    tool: np.ndarray  # (n,) int: index into the tool list, NO_TOOL outside calls


def step_labels(example: Example) -> np.ndarray:
    """(L,) index into STEPS of every token of the sequence; tokens outside assistant turns are -1. Where
    kinds overlap (an integration span that quotes a call), the call wins: names, then arguments."""
    n = len(example.input_ids)
    out = np.full(n, -1, dtype=np.int64)
    for a, b in example.segments:
        out[a:b] = 0
    for k in ("integration", "json_args", "tool_name"):  # later kinds overwrite earlier ones
        for a, b in example.spans.get(k, []):
            inside = np.arange(max(a, 0), min(b, n))
            inside = inside[out[inside] >= 0]
            out[inside] = STEPS.index(k)
    return out


def probe_rows(example: Example, tools: list[str]) -> TokenLabels:
    """The (position, step, tool) rows of one example: every assistant-turn token but the first of the
    sequence (no state writes it)."""
    steps = step_labels(example)
    tool = np.full(len(steps), NO_TOOL, dtype=np.int64)
    for name, a, b in example.calls:
        if name in tools:
            tool[a:b] = tools.index(name)
    t = np.flatnonzero(steps >= 0)
    t = t[t > 0]
    return TokenLabels(t - 1, steps[t], tool[t])
