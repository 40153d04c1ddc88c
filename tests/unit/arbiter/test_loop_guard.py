"""judge eval's loop guard: no target the oracle writes (any of the three forms) counts as a loop; an output
that writes one check line over and over is stopped where the line is written the LOOP_REPEATS-th time,
its text kept up to there; the generator's own stop rule still stops a row. Real SmolLM2 token ids."""

from __future__ import annotations

import json

import pytest

from kimi_student.arbiter.judge_data import TARGETS, records, target_text
from kimi_student.arbiter.judge_eval import LOOP_REPEATS, LoopGuard, looping
from kimi_student.backends.embedded import smollm2_folder
from kimi_student.chat.template import ChatTokenizer


@pytest.fixture(scope="module")
def chat() -> ChatTokenizer:
    return ChatTokenizer(smollm2_folder())


def test_no_oracle_target_is_a_loop() -> None:
    recs = [r for split in ("train", "heldout") for r in records(3, split, 200, 0)]
    assert len(recs) >= 300
    for target in TARGETS:
        for r in recs:
            assert not looping(target_text(r, target)), (target, r["id"])


def _looping_output() -> tuple[str, str]:
    """An audit output that starts right and then repeats two check lines (stop 41's loops), and the line."""
    head = ["files 2, tier 1 max 2: ok", "lines added 9, tier 1 max 40: ok"]
    pair = ["tests: pass", "lint: pass"]
    return '{"checks": [' + ", ".join(json.dumps(x) for x in head + pair * 12), pair[0]


def test_a_repeated_check_line_is_a_loop() -> None:
    text, line = _looping_output()
    assert looping(text)
    cut = text[: [i for i in range(len(text)) if text.startswith(json.dumps(line), i)][LOOP_REPEATS - 1]]
    assert not looping(cut)  # five times: not yet


def test_the_guard_stops_where_the_line_is_written_the_last_time(chat: ChatTokenizer) -> None:
    text, line = _looping_output()
    ids = chat.tok(text, add_special_tokens=False)["input_ids"]
    guard = LoopGuard(chat.stop_rule(), chat.tok)
    stop_at = next(n for n in range(1, len(ids) + 1) if guard.stops(ids[:n]))
    said = chat.tok.decode(ids[:stop_at])
    assert text.startswith(said) and said.count(json.dumps(line)) == LOOP_REPEATS
    assert said.rsplit(json.dumps(line), 1)[1] in ("", ",")  # its closing quote's token
    assert len(said) < len(text) * 0.8  # what it saves: the rest of the loop


def test_the_guard_keeps_the_generators_stop_rule(chat: ChatTokenizer) -> None:
    guard = LoopGuard(chat.stop_rule(), chat.tok)
    ids = chat.tok('{"status": "PASS"}', add_special_tokens=False)["input_ids"]
    assert not any(guard.stops(ids[:n]) for n in range(1, len(ids) + 1))
    assert guard.stops(ids + [next(iter(chat.stop_ids))])
