"""What a student trains on is what it reads at eval: every tool response in a gold transcript is, byte for
byte, the block the tool loop writes for that call (the ToolBroker's replay from the dataset's fixture
files, through format_response). Fixture files hold canonical JSON, so the order of a result's keys was
once the generator's in training and sorted at eval, and a trained teacher copied the wrong field."""

from __future__ import annotations

import re
from pathlib import Path

from kimi_student.chat.transcript import RESP_CLOSE, RESP_OPEN, format_response, parse_transcript
from kimi_student.data.contextual import generate, write_dataset
from kimi_student.tools.broker import ToolBroker

_BLOCK = re.compile(re.escape(RESP_OPEN) + ".*?" + re.escape(RESP_CLOSE), re.S)


def test_every_gold_tool_response_is_the_tool_loops_replay(tmp_path: Path) -> None:
    header, items, fixtures = generate(300, 9)
    fx_dir = write_dataset(tmp_path / "d.jsonl", header, items, fixtures)
    broker = ToolBroker.from_folders([fx_dir])
    checked = 0
    for it in items:
        text = it["teacher_text"]
        calls, blocks = parse_transcript(text).calls, _BLOCK.findall(text)
        assert len(blocks) == len(calls), it["id"]
        for call, block in zip(calls, blocks, strict=True):
            if call.name is None:  # a malformed_json item's call does not parse: no fixture to replay
                continue
            assert format_response(broker.lookup(call.name, call.arguments).result) == block, it["id"]
            checked += 1
    assert checked >= 300  # every scenario's calls, most items have one or two
