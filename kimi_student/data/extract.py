"""Extract process-step targets: byte offsets and token spans of tool names, JSON arguments and
integration spans, for the tokenizer the student will train with."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kimi_student.chat.transcript import byte_offsets, parse_transcript
from kimi_student.jsonl import gc_paused
from kimi_student.tokenizer import TokenizerHandle, token_range

BATCH = 512


def _spans(
    table: dict[int, int], offsets: list[tuple[int, int]], ranges: list[tuple[int, int]]
) -> tuple[list, list]:
    return [[table[s], table[e]] for s, e in ranges], [list(token_range(offsets, s, e)) for s, e in ranges]


def _span_fields(text: str, offs: list[tuple[int, int]]) -> dict[str, Any]:
    t = parse_transcript(text)
    names = [c.name_span for c in t.calls if c.name_span]
    args = [c.args_span for c in t.calls if c.args_span]
    table = byte_offsets(text, [p for r in (*t.spans, *names, *args) for p in r])
    out: dict[str, Any] = {}
    out["integration_spans_bytes"], out["integration_spans_tokens"] = _spans(table, offs, t.spans)
    out["tool_name_spans_bytes"], out["tool_name_spans_tokens"] = _spans(table, offs, names)
    out["json_args_spans_bytes"], out["json_args_spans_tokens"] = _spans(table, offs, args)
    out["n_tokens"] = len(offs)
    return out


def extract_items(items: list[dict[str, Any]], tok: TokenizerHandle) -> list[dict[str, Any]]:
    """Items with span fields added (byte offsets into teacher_text, token [start, end) ranges)."""
    with gc_paused():
        return list(extracted(items, tok))


def extracted(items: list[dict[str, Any]], tok: TokenizerHandle) -> Iterator[dict[str, Any]]:
    """Each item with its span fields added, in order, as soon as its text's batch is worked out: a
    caller that writes them as they come writes while the next batches are encoded. The fields are a
    function of teacher_text alone: each distinct text is encoded and worked out once, BATCH at a time."""
    texts = list(dict.fromkeys(it["teacher_text"] for it in items))
    batches = [texts[lo : lo + BATCH] for lo in range(0, len(texts), BATCH)]
    encoded = zip(batches, tok.offsets_ahead(batches))
    fields: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for it in items:
        text, meta = it["teacher_text"], dict(it["metadata"])
        while text not in fields:  # texts come in the order their batches were made
            batch, offsets = next(encoded)
            fields.update((t, _span_fields(t, o)) for t, o in zip(batch, offsets))
        if text in taken:  # each item its own lists: the first takes them, a repeat gets copies
            meta.update(
                (k, [list(x) for x in v] if isinstance(v, list) else v) for k, v in fields[text].items()
            )
        else:
            taken.add(text)
            meta.update(fields[text])
        yield {**it, "metadata": meta}
