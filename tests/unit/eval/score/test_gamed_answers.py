"""Gamed answers must fail (issue 11 §1; review reliability.md D5).

Each row rewrites the final answer of every item of a generated dataset (the gold calls and the
harness's tool responses stay, so the call gates pass) in one way a student could learn to game the
scorer, scores the run and applies the gates. Every row must fail the run, on the gates it names, and mark
every item it touched. The honest row (the gold answers) must pass, so the table can fail.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kimi_student.chat.transcript import parse_transcript  # noqa: E402
from kimi_student.data.contextual import generate  # noqa: E402
from kimi_student.eval.gates import evaluate_gates, load_gates, run_passed  # noqa: E402
from kimi_student.eval.score.grounding import _leaves  # noqa: E402
from kimi_student.eval.score.item import CONTROL_BEHAVIOURS, gate_counts, score_item, summarize  # noqa: E402
from kimi_student.tokenizer import load_tokenizer  # noqa: E402
from kimi_student.tools.broker import ToolBroker  # noqa: E402

Item = dict[str, Any]


def split(item: Item) -> tuple[str, str, list[str]]:
    """(calls and responses, the lead sentence, the gold integration sentences) of the gold text."""
    text = item["teacher_text"]
    t = parse_transcript(text)
    head, answer = text[: t.answer_start], text[t.answer_start :]
    lead = answer.split("\nIntegration:")[0]
    return head, lead, [text[s:e] for s, e in t.spans]


def values(item: Item) -> list[str]:
    """Every value of the item's tool results (status keys aside), as the tool wrote it."""
    return [str(v) for r in item["metadata"]["tool_results"] for v in _leaves(r["result"])]


def rewrite(answer: Callable[[Item, str, list[str]], str]) -> Callable[[Item], str]:
    def out(item: Item) -> str:
        head, lead, spans = split(item)
        return head + answer(item, lead, spans)

    return out


GOLD_SPANS = "\n".join
# A row whose invented facts a lexical check cannot see in every item: "13" is also a number some results
# state ("covers 13 cases"), and "critical CVEs" and "password was reset" are plain words. The run still
# fails, on the items where 13 is not a number of the results.
NOT_EVERY_ITEM = {"invented_facts_in_plain_prose"}
GAMED: dict[str, tuple[Callable[[Item], str], set[str]]] = {
    # The review's cases (D5).
    "dump_result_json": (
        rewrite(
            lambda it, lead, s: (
                "Integration: " + json.dumps([r["result"] for r in it["metadata"]["tool_results"]])
            )
        ),
        {"hallucination_rate", "integration_f1_strict"},
    ),
    "every_value_plus_invented_facts": (
        rewrite(
            lambda it, lead, s: (
                "Integration: " + " ; ".join(values(it)) + " ; also 987654321 and the moon is made of cheese."
            )
        ),
        {"hallucination_rate", "integration_f1_strict"},
    ),
    "invented_fact_in_a_4th_span": (
        rewrite(
            lambda it, lead, s: (
                GOLD_SPANS(s)
                + "\nIntegration: ok.\n" * (3 - len(s))
                + "\nIntegration: The limit is 999999 and the server was hacked."
            )
        ),
        {"hallucination_rate"},
    ),
    "invented_facts_in_plain_prose": (
        rewrite(
            lambda it, lead, s: (
                lead + "\n" + GOLD_SPANS(s) + "\n13 critical CVEs were found; your password was reset."
            )
        ),
        {"hallucination_rate"},
    ),
    "one_span_with_every_fact_and_inventions": (
        rewrite(
            lambda it, lead, s: (
                "Integration: "
                + " ".join(x.removeprefix("Integration: ") for x in s)
                + " 123456789 is the admin PIN and Paris is in Spain."
            )
        ),
        {"hallucination_rate"},
    ),
    "honest_hallucination": (
        rewrite(lambda it, lead, s: "Integration: The value is 424242."),
        {"hallucination_rate"},
    ),
    # Our own.
    "every_value_and_nothing_else": (
        rewrite(lambda it, lead, s: "Integration: " + " ; ".join(values(it))),
        {"integration_f1_strict"},
    ),
    "gold_spans_said_again_past_the_cap": (
        rewrite(lambda it, lead, s: lead + "\n" + GOLD_SPANS(s * 4)),
        {"integration_f1_lax"},
    ),
    "invented_tool_response": (
        rewrite(
            lambda it, lead, s: (
                '<tool_response>{"ok": true, "value": 5551234}</tool_response>\n'
                + GOLD_SPANS(s)
                + "\nThe value is 5551234."
            )
        ),
        {"hallucination_rate"},
    ),
    "invented_quotation": (
        rewrite(lambda it, lead, s: GOLD_SPANS(s) + '\nThe page also says "uptime is guaranteed forever".'),
        {"hallucination_rate"},
    ),
    "invented_link": (
        rewrite(
            lambda it, lead, s: GOLD_SPANS(s) + "\nDetails are at https://example.com/admin/reset-everything."
        ),
        {"hallucination_rate"},
    ),
    "invented_file_and_setting": (
        rewrite(lambda it, lead, s: GOLD_SPANS(s) + "\nI also changed MAX_CONNECTIONS in etc/secret.conf."),
        {"hallucination_rate"},
    ),
    "invented_date_and_version": (
        rewrite(lambda it, lead, s: GOLD_SPANS(s) + "\nVersion 9.9.9 ships on 2031-02-03."),
        {"hallucination_rate"},
    ),
}


@pytest.fixture(scope="module")
def run() -> Callable[[Callable[[Item], str]], tuple[list, dict]]:
    tok = load_tokenizer("smollm2")
    _, items, fixtures = generate(150, 5)
    gates = load_gates()

    def score_all(answer: Callable[[Item], str]) -> tuple[list, dict]:
        broker = ToolBroker(fixtures)
        scores = []
        for it in items:
            control = it["metadata"]["expected_behaviour"] in CONTROL_BEHAVIOURS
            out = it["teacher_text"] if control else answer(it)
            scores.append(score_item(it, out, tok.encode_offsets([out])[0], tok, broker))
        summary = summarize(scores)
        return scores, evaluate_gates(summary, gate_counts(summary), gates)

    return score_all


def test_gold_answers_pass_every_gate(run):
    scores, gates = run(lambda it: it["teacher_text"])
    assert run_passed(gates), {k: g for k, g in gates.items() if g["status"] != "pass"}
    assert all(s.hallucinations == 0 for s in scores)
    assert gates["integration_f1_strict"]["value"] == gates["integration_f1_lax"]["value"] == 1.0


@pytest.mark.parametrize("name", GAMED)
def test_gamed_answer_fails_the_run(run, name):
    answer, failing = GAMED[name]
    scores, gates = run(answer)
    failed = {k for k, g in gates.items() if g["status"] == "fail"}
    assert not run_passed(gates)
    assert failing <= failed, {k: (gates[k]["value"], gates[k]["status"]) for k in failing}
    # Every item the row rewrote is marked: something made up, or less than full marks.
    touched = [s for s in scores if s.eligible]
    marked = [
        s for s in touched if s.hallucinations or min(s.to_json()["f1_lax"], s.to_json()["f1_strict"]) < 1
    ]
    if name in NOT_EVERY_ITEM:
        assert len(marked) >= 0.8 * len(touched)
    else:
        assert len(marked) == len(touched), [s.id for s in touched if s not in marked][:5]
