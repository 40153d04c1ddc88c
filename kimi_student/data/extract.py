"""Extract process-step targets: byte offsets and token spans of tool names, JSON arguments and
integration spans, for the tokenizer the student will train with."""

from __future__ import annotations

from typing import Any

from kimi_student.chat.transcript import char_to_byte_offsets, parse_transcript
from kimi_student.tokenizer import TokenizerHandle, token_range

BATCH = 512


def _spans(text: str, offsets: list[tuple[int, int]], ranges: list[tuple[int, int]]) -> tuple[list, list]:
    table = char_to_byte_offsets(text)
    return [[table[s], table[e]] for s, e in ranges], [list(token_range(offsets, s, e)) for s, e in ranges]


def extract_items(items: list[dict[str, Any]], tok: TokenizerHandle) -> list[dict[str, Any]]:
    """Items with span fields added (byte offsets into teacher_text, token [start, end) ranges)."""
    out = []
    for lo in range(0, len(items), BATCH):
        chunk = items[lo : lo + BATCH]
        encs = tok.encode_offsets([it["teacher_text"] for it in chunk])
        for it, (ids, offs) in zip(chunk, encs):
            text = it["teacher_text"]
            t = parse_transcript(text)
            meta = dict(it["metadata"])
            meta["integration_spans_bytes"], meta["integration_spans_tokens"] = _spans(text, offs, t.spans)
            meta["tool_name_spans_bytes"], meta["tool_name_spans_tokens"] = _spans(
                text, offs, [c.name_span for c in t.calls if c.name_span]
            )
            meta["json_args_spans_bytes"], meta["json_args_spans_tokens"] = _spans(
                text, offs, [c.args_span for c in t.calls if c.args_span]
            )
            meta["n_tokens"] = len(ids)
            out.append({**it, "metadata": meta})
    return out
