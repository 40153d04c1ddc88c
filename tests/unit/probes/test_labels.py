"""Probe labels sit on the tokens they name, in every turn (each turn's spans moved by its own offset, not
counted from the sequence start), and a probe row pairs a token with the state that writes it (t - 1)."""

from __future__ import annotations

import numpy as np

from kimi_student.probes.labels import NO_TOOL, STEPS, probe_rows, step_labels
from kimi_student.train.examples import ExampleBuilder
from tests.unit.train.test_conversation_examples import (  # noqa: F401 (fixtures)
    ANSWER,
    CALL1,
    CALL2,
    RESP1,
    RESP2,
    build,
    builder,
    world,
)


def _text(b: ExampleBuilder, ids: np.ndarray) -> str:
    return b.tok.decode(ids.tolist(), skip_special_tokens=False)


def test_step_labels_name_each_turns_own_tokens(builder: ExampleBuilder) -> None:  # noqa: F811
    ex = build(builder, f"{CALL1}\n{RESP1}\n{CALL2}\n{RESP2}\n{ANSWER}")
    steps = step_labels(ex)
    ids = ex.input_ids
    assert _text(builder, ids[steps == STEPS.index("tool_name")]) == "web.searchweb.crawl"
    assert (
        _text(builder, ids[steps == STEPS.index("json_args")])
        == '{"query": "bloom filter"}{"url": "https://x.org/b"}'
    )
    assert (
        _text(builder, ids[steps == STEPS.index("integration")]) == 'Integration: The top result is "Bloom".'
    )
    assert _text(builder, ids[steps == -1]).count("<tool_response>") == 2  # context: no label
    # the second call's name lies in the second turn, far from where a span counted from 0 would put it
    (a2, _), (b2, _) = ex.segments[1], ex.spans["tool_name"][1]
    assert b2 > a2 > ex.segments[0][1] and steps[b2] == STEPS.index("tool_name")


def test_probe_rows_pair_a_token_with_the_state_before_it_and_its_calls_tool(
    builder: ExampleBuilder,  # noqa: F811
) -> None:
    ex = build(builder, f"{CALL1}\n{RESP1}\n{CALL2}\n{RESP2}\n{ANSWER}")
    tools = ["web.crawl", "web.search"]
    rows = probe_rows(ex, tools)
    steps = step_labels(ex)
    labelled = np.flatnonzero(steps >= 0)
    assert rows.positions.tolist() == (labelled - 1).tolist()
    assert rows.step.tolist() == steps[labelled].tolist()
    # a call's tokens (name through arguments) carry its tool; the answer's do not
    by_tool = {
        t: _text(builder, ex.input_ids[rows.positions[rows.tool == i] + 1]) for i, t in enumerate(tools)
    }
    assert by_tool == {
        "web.search": 'web.search", "arguments": {"query": "bloom filter"}',
        "web.crawl": 'web.crawl", "arguments": {"url": "https://x.org/b"}',
    }
    assert (rows.tool[rows.step == STEPS.index("integration")] == NO_TOOL).all()
