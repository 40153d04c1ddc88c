"""Items whose conversation outgrew the model's context (issue 13: "reported apart, never silently
dropped"): the runner's finish `context` marks the row, the item is scored as it is (its empty answer
still counts in every metric) and the summary counts and names it."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kimi_student.data.contextual import generate  # noqa: E402
from kimi_student.eval.runners.base import ItemOutput  # noqa: E402
from kimi_student.eval.score.item import ItemScore, summarize  # noqa: E402
from kimi_student.eval.score.tokens import encode_answers  # noqa: E402
from kimi_student.eval.workers import result_row  # noqa: E402
from kimi_student.tokenizer import load_tokenizer  # noqa: E402
from kimi_student.tools.broker import ToolBroker  # noqa: E402


def test_an_item_over_the_context_is_scored_as_it_is_and_counted_apart() -> None:
    tok = load_tokenizer("smollm2")
    _, items, fixtures = generate(40, 2)
    broker = ToolBroker(fixtures)
    # the first 5 items did not fit (no text: the runner never decoded them), the rest answer with gold text
    outs = [ItemOutput("", None, [], "context") for _ in items[:5]]
    outs += [ItemOutput(it["teacher_text"], None, [], "answer") for it in items[5:]]
    rows = [
        result_row(it, out, enc, tok, broker)
        for it, out, enc in zip(items, outs, encode_answers(tok, [o.text for o in outs]), strict=True)
    ]
    assert [r["over_context"] for r in rows] == [True] * 5 + [False] * 35
    assert [r["finish"] for r in rows[:5]] == ["context"] * 5
    s = summarize([ItemScore.from_json(r) for r in rows])
    assert s["over_context_items"] == 5 and s["over_context_ids"] == [it["id"] for it in items[:5]]
    # nothing dropped: the same rows without the mark give the same metrics
    plain = summarize([ItemScore.from_json({**r, "over_context": False}) for r in rows])
    assert plain["over_context_items"] == 0 and plain["over_context_ids"] == []
    for k in ("items", "eligible_items", "integration_f1_lax", "hallucination_rate", "call_sequence_parity"):
        assert s[k] == plain[k], k
    assert s["items"] == 40 and s["integration_f1_lax"] < 1.0  # the 5 unanswered items cost recall
    # a row written before the field existed reads back as within the context
    old = {k: v for k, v in rows[0].items() if k != "over_context"}
    assert ItemScore.from_json(old).over_context is False
