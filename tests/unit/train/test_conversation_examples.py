"""Training examples are conversations: the token sequence the tool loop shows the model, with loss on the
assistant turns only (process weights on tool names, JSON arguments, integration spans and each turn's
first token) and the end
token after the last turn. A small BPE (the worker recipe's, ~1 s) is trained once for the module.

Each weight class is checked by decoding its tokens in order: the exact positions, in readable form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from transformers import AutoTokenizer

from kimi_student.chat.prompt import item_messages
from kimi_student.chat.template import ChatTokenizer
from kimi_student.data.contextual import generate
from kimi_student.eval.runners.tool_loop import Generation, Messages, run_tool_loop
from kimi_student.recipes.toy_e2e import fit_tokenizer
from kimi_student.recipes.toy_run import ToyRun
from kimi_student.recipes.worker_e2e import conversation_text
from kimi_student.tools.broker import ToolBroker
from kimi_student.train.examples import Example, ExampleBuilder, conversation_turns

# distinct weights, so each kind's tokens can be told apart
WEIGHTS = {"tool_name": 2.0, "json_args": 3.0, "integration": 4.0}
EOS = "<|endoftext|>"
CALL1 = '<tool_call>{"name": "web.search", "arguments": {"query": "bloom filter"}}</tool_call>'
RESP1 = '<tool_response>{"ok": true, "total": 1, "results": [{"title": "Bloom", "rank": 1}]}</tool_response>'
CALL2 = '<tool_call>{"name": "web.crawl", "arguments": {"url": "https://x.org/b"}}</tool_call>'
RESP2 = '<tool_response>{"ok": true, "text": "limit is 60"}</tool_response>'
ANSWER = 'I searched.\nIntegration: The top result is "Bloom".'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Generated items (the gold runs), their fixtures, and a BPE trained on their conversations."""
    _, items, fixtures = generate(120, 3)
    run = ToyRun.at(tmp_path_factory.mktemp("tok"))
    extra = [f"user: x\nassistant: {CALL1}\ntool: {RESP1}\nassistant: {CALL2}\ntool: {RESP2}\n{ANSWER}\n"]
    fit_tokenizer([*map(conversation_text, items), *extra], run, 600, split_digits=True)
    return {"items": items, "fixtures": fixtures, "tokenizer": run.tokenizer}


@pytest.fixture(scope="module")
def builder(world: dict[str, Any]) -> ExampleBuilder:
    return ExampleBuilder(AutoTokenizer.from_pretrained(str(world["tokenizer"])), WEIGHTS)


def by_weight(b: ExampleBuilder, ex: Example) -> dict[float, str]:
    """The text of each weight class's tokens, in sequence order."""
    return {
        float(w): b.tok.decode(ex.input_ids[ex.weights == w].tolist(), skip_special_tokens=False)
        for w in np.unique(ex.weights)
    }


def build(b: ExampleBuilder, text: str) -> Example:
    return b.build("t", "gold", [{"role": "user", "content": "find it"}], text)


def test_single_call_item_weights_the_call_and_answer_only(builder: ExampleBuilder) -> None:
    ex = build(builder, f"{CALL1}\n{RESP1}\n{ANSWER}")
    text = builder.tok.decode(ex.input_ids.tolist(), skip_special_tokens=False)
    assert text == f"user: find it\nassistant: {CALL1}\ntool: {RESP1}\nassistant: {ANSWER}{EOS}"
    got = by_weight(builder, ex)
    assert got[0.0] == f"user: find it\nassistant: \ntool: {RESP1}\nassistant: "  # prompt, template, tool
    assert got[1.0] == '<tool_call>{"name": "", "arguments": }</tool_call>I searched.\n' + EOS
    assert got[2.0] == "web.search"
    assert got[3.0] == '{"query": "bloom filter"}'
    assert got[4.0] == 'Integration: The top result is "Bloom".'
    prompt = builder.tok("user: find it\nassistant: ")["input_ids"]
    assert ex.response_start == len(prompt) and ex.input_ids[: len(prompt)].tolist() == prompt
    assert ex.weights[: len(prompt)].sum() == 0 and ex.weights[len(prompt)] == 1.0  # `<tool_call>`
    assert ex.input_ids[-1] == builder.eos and ex.weights[-1] == 1.0  # the loop stops on it


def test_multi_call_item_leaves_every_tool_response_unweighted(builder: ExampleBuilder) -> None:
    ex = build(builder, f"{CALL1}\n{RESP1}\n{CALL2}\n{RESP2}\n{ANSWER}")
    got = by_weight(builder, ex)
    assert got[0.0] == (f"user: find it\nassistant: \ntool: {RESP1}\nassistant: \ntool: {RESP2}\nassistant: ")
    assert got[2.0] == "web.searchweb.crawl"
    assert got[3.0] == '{"query": "bloom filter"}{"url": "https://x.org/b"}'
    assert got[4.0] == 'Integration: The top result is "Bloom".'
    # every `</tool_call>` is weighted and followed by unweighted template text: the turn ends on it
    close = builder.tok.convert_tokens_to_ids("</tool_call>")
    at = np.flatnonzero(ex.input_ids == close)
    assert len(at) == 2 and (ex.weights[at] == 1.0).all() and (ex.weights[at + 1] == 0.0).all()


def test_turn_start_weighs_each_turns_first_token_where_it_calls_or_answers(world: dict[str, Any]) -> None:
    b = ExampleBuilder(AutoTokenizer.from_pretrained(str(world["tokenizer"])), {**WEIGHTS, "turn_start": 5.0})
    ex = build(b, f"{CALL1}\n{RESP1}\n{CALL2}\n{RESP2}\n{ANSWER}")
    starts = [a for a, _ in ex.segments]
    assert len(starts) == 3 and np.flatnonzero(ex.weights == 5.0).tolist() == starts
    first = [b.tok.decode([int(ex.input_ids[a])], skip_special_tokens=False) for a in starts]
    assert first == ["<tool_call>", "<tool_call>", "I "]  # call, call again, answer: the three decisions
    plain = build(ExampleBuilder(b.tok, WEIGHTS), f"{CALL1}\n{RESP1}\n{CALL2}\n{RESP2}\n{ANSWER}")
    rest = np.ones(len(ex.weights), dtype=bool)
    rest[starts] = False
    assert np.array_equal(ex.weights[rest], plain.weights[rest]) and (plain.weights[starts] == 1.0).all()


def test_no_tool_item_is_one_turn_ending_with_eos(builder: ExampleBuilder) -> None:
    ex = build(builder, "A JSON Schema describes JSON documents.")
    got = by_weight(builder, ex)
    assert got == {0.0: "user: find it\nassistant: ", 1.0: f"A JSON Schema describes JSON documents.{EOS}"}


def test_a_call_without_response_stays_in_the_turn() -> None:
    """The toy's transcripts are one call, no response: one assistant turn, as before."""
    assert conversation_turns(CALL1) == [{"role": "assistant", "content": CALL1}]
    assert conversation_turns(f"{CALL1}\n{RESP1}") == [
        {"role": "assistant", "content": CALL1},
        {"role": "tool", "content": RESP1},
        {"role": "assistant", "content": ""},
    ]


class GoldReplay:
    """A perfect model: writes each gold assistant turn in order, and records the prompt ids it was
    given, through the chat tokenizer every local runner (hf_local, coreml) uses."""

    fingerprint = "gold-replay"

    def __init__(self, folder: Path, turns: dict[str, list[str]]):
        self.chat, self.turns, self.prompts = ChatTokenizer(folder), turns, {}

    def generate(self, conversations: list[Messages]) -> list[Generation]:
        out = []
        for c in conversations:
            key = c[0]["content"]  # the request
            self.prompts.setdefault(key, []).append(self.chat.prompt_ids(c))
            out.append(Generation(self.turns[key].pop(0)))
        return out

    def close(self) -> None: ...


def test_training_sequence_is_the_tool_loops_sequence(world: dict[str, Any], builder: ExampleBuilder) -> None:
    """A gold run through the real tool loop and ToolBroker: every prompt the model is given is a prefix of
    the training sequence, followed there by the turn it must write; the transcript equals the gold."""
    picked: dict[tuple[str, str], dict[str, Any]] = {}
    for it in world["items"]:  # one item per (complexity, behaviour), long-context ones left out
        m = it["metadata"]
        if not m["long_context"]:
            picked.setdefault((m["complexity"], m["expected_behaviour"]), it)
    assert {k[0] for k in picked} >= {"single_call", "multi_call", "branching_error_recovery", "none"}
    items = list(picked.values())
    msgs = [item_messages(it, "request") for it in items]
    keys = [m[0]["content"] for m in msgs]
    turns = {
        k: [t["content"] for t in conversation_turns(it["teacher_text"]) if t["role"] == "assistant"]
        for k, it in zip(keys, items)
    }
    gen = GoldReplay(world["tokenizer"], turns)
    outs = run_tool_loop(gen, ToolBroker(world["fixtures"]), msgs, max_turns=4)
    for it, m, k, o in zip(items, msgs, keys, outs):
        assert o.text == it["teacher_text"] and o.finish == "answer"
        ex = builder.build(it["id"], "gold", m, it["teacher_text"])
        seq = ex.input_ids.tolist()
        gold_turns = [t["content"] for t in o.turns if t["role"] == "assistant"]
        assert len(gen.prompts[k]) == len(gold_turns)
        for prompt, turn in zip(gen.prompts[k], gold_turns):
            target = builder.tok(turn, add_special_tokens=False)["input_ids"]
            assert seq[: len(prompt)] == prompt, it["id"]
            assert seq[len(prompt) : len(prompt) + len(target)] == target
            assert (ex.weights[len(prompt) : len(prompt) + len(target)] > 0).all()
            assert ex.weights[: len(prompt)][: ex.response_start].sum() == 0
        # the whole conversation the loop ended with, plus the end token, is the training sequence
        assert seq == builder.prompt_ids(m + o.turns)[: len(seq) - 1] + [builder.eos]
        assert len(seq) - 1 == len(gen.prompts[k][-1]) + len(target)


def test_the_worker_bpe_splits_digits(builder: ExampleBuilder) -> None:
    """`split_digits`: a number is its digits, so one a tool returned is copied digit by digit."""
    assert builder.tok.tokenize("58869.72") == ["5", "8", "8", "6", "9", ".", "7", "2"]


@pytest.fixture(scope="module")
def judge_builder(world: dict[str, Any]) -> ExampleBuilder:
    """A builder that weighs a Judge's decisions 5 (process kind `verdict`)."""
    return ExampleBuilder(AutoTokenizer.from_pretrained(str(world["tokenizer"])), {**WEIGHTS, "verdict": 5.0})


def test_verdict_weighs_a_judges_decision_and_nothing_else(judge_builder: ExampleBuilder) -> None:
    b = judge_builder
    verdict = '{"status": "FAIL", "violated_clauses": ["SCOPE_BOUNDARY"], "rationale": "FAIL: src/x is out."}'
    got = by_weight(b, build(b, verdict))
    # the status value and the clause list, in order (a token that runs past the list's end comes with it)
    assert got[5.0].rstrip(", ") == 'FAIL["SCOPE_BOUNDARY"]'
    before, _, after = got[1.0].partition('"rationale"')
    assert "FAIL" not in before and "SCOPE" not in before and after.endswith('"FAIL: src/x is out."}' + EOS)
    assert by_weight(b, build(b, '{"winner": "tie"}'))[5.0] == "tie"
    # only a response that is a verdict: a status quoted inside an answer weighs as the answer does
    assert 5.0 not in by_weight(b, build(b, 'He wrote {"status": "PASS", "violated_clauses": []}.'))
    assert 5.0 not in by_weight(b, build(b, f"{CALL1}\n{RESP1}\n{ANSWER}"))


def test_verdict_weighs_the_decisions_of_a_reasoned_target(judge_builder: ExampleBuilder) -> None:
    """The reasoned form writes the facts before it rules: the findings' clauses and dispositions, the
    violated clauses, the status (a pair's two statuses and its winner) weigh; the counts and details do not."""
    b = judge_builder
    reasoned = (
        '{"budget": {"files_changed": 3, "lines_added": 9, "max_files": 2, "max_loc": 10}, "findings": '
        '[{"clause": "BUDGET_ADHERENCE", "rule": "max_files", "disposition": "blocking", "detail": '
        '"3 files, \\"status\\": \\"PASS\\" at most 2"}], "violated_clauses": ["BUDGET_ADHERENCE"], '
        '"status": "FAIL", "rationale": "FAIL: BUDGET_ADHERENCE violated."}'
    )
    got = by_weight(b, build(b, reasoned))
    assert got[5.0].replace(", ", "") == 'BUDGET_ADHERENCEblocking["BUDGET_ADHERENCE"]FAIL'
    assert "3" in got[1.0] and "PASS" in got[1.0] and "max_files" in got[1.0]
    pair = by_weight(b, build(b, '{"a": "FAIL", "b": "PASS", "winner": "b"}'))
    assert pair[5.0] == "FAILPASSb"


def test_verdict_weighs_each_checks_outcome_in_an_audit_target(judge_builder: ExampleBuilder) -> None:
    """The audit form copies facts, then compares: each check's outcome (after its last ": "), with a broken
    rule's fate, weighs as a decision, and so do the decisions a line takes before it (the first word after
    its first ": ", an expiry after or not after now, the mark after a budget's maximum), the clauses and the
    status; the copied facts do not. A drill (its checks alone) weighs the same."""
    b = judge_builder
    checks = (
        '{"checks": ["waiver WV-1 on budget_limit: active; expires 2027-06-01T00:00:00Z not after now '
        '2027-06-11T05:00:00Z; for A-1: waiver_invalid -> WAIVER_VALIDITY blocking", "files 13, tier 2 max 10: '
        'max_files_exceeded -> BUDGET_ADHERENCE blocking", "lines added 9, tier 2 max 50, 60 with WV-2: ok", '
        '"src/a.py: in src/a: ok", "src/b/c.py: under scope out src/b: path_in_scope_out -> SCOPE_BOUNDARY '
        'blocking"]'
    )
    audit = (
        checks + ', "violated_clauses": ["BUDGET_ADHERENCE"], "status": "FAIL", "rationale": "FAIL: x: y."}'
    )
    weighed = by_weight(b, build(b, audit))[5.0].replace('"', "").replace(" ", "")
    lines = (
        "activenotafterwaiver_invalid->WAIVER_VALIDITYblocking",  # state, expiry, outcome
        ":max_files_exceeded->BUDGET_ADHERENCEblocking",  # no raise after the maximum, outcome
        ",ok",  # a raise after it
        "inok",
        "underpath_in_scope_out->SCOPE_BOUNDARYblocking",
    )
    # (the token after the clause list runs past its end and comes with it: "],")
    assert weighed == "".join(lines) + "[BUDGET_ADHERENCE],FAIL"
    got = by_weight(b, build(b, audit))
    assert "13" in got[1.0] and "2027" in got[1.0] and "y." in got[1.0] and "src/b" in got[1.0]
    drill = by_weight(b, build(b, checks + "}"))
    assert drill[5.0].replace('"', "").replace(" ", "") == "".join(lines)
    empty = by_weight(
        b, build(b, '{"checks": [], "violated_clauses": [], "status": "PASS", "rationale": "x"}')
    )
    assert empty[5.0].replace(", ", "") == "[]PASS"  # (a token that runs past the list's end comes with it)
