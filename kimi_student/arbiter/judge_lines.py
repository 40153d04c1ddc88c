"""`kimi-student judge lines`: where an audit Judge departs from the oracle's check lines, read teacher-forced.

One forward pass a case over its prompt and the oracle's audit target: at each token of each check line, is the
Judge's most likely next token the oracle's? A line is *exact* when every one of its tokens is. Lines are
counted per group of checks (`audit.FAMILIES`) and apart for the lines that break a rule, since those are the
Judge's decisions and a line that holds `ok` is mostly a copy; the first token a line misses says which
decision failed (`src/x/legacy/a.py:` wanting ` under` and getting ` in`: the path's scope entry was not
found). A line is *decided* when its decision tokens (the process kind `verdict`'s: its outcome and the
choices before it) are the oracle's, each read after the oracle's own text: whether the Judge compares right,
apart from whether it copies; *copied* when its other tokens are (stop 44). A case costs one forward pass where
`judge eval` decodes ~400 tokens, so a trained Judge is read in a minute or two before its eval (issue 14,
stop 43). Scores are pure (`line_misses`, `summarise`); the model runs in `read_lines`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kimi_student.arbiter.audit import FAMILIES
from kimi_student.arbiter.judge_data import audit_target
from kimi_student.train.examples import process_spans

STATUS_AT = '"status": "'


def line_spans(target: str, parts: Sequence[tuple[str, str]]) -> list[tuple[str, str, int, int]]:
    """(group, line, start, end): where each check line's text stands in the audit target's JSON text."""
    out, pos = [], 0
    for group, line in parts:
        quoted = json.dumps(line, ensure_ascii=False)
        at = target.index(quoted, pos)
        pos = at + len(quoted)
        out.append((group, line, at + 1, pos - 1))
    return out


def line_misses(
    spans: Sequence[tuple[str, str, int, int]],
    offsets: Sequence[tuple[int, int]],
    gold: Sequence[int],
    pred: Sequence[int],
    decisions: Sequence[Sequence[int]],
) -> list[dict[str, Any]]:
    """Each line's verdict: its group, whether it breaks a rule, whether every token of it was predicted, the
    first token that was not (`at`: its index in `gold`), whether every decision token of it was (`decided`)
    and every other token (`copied`: exact = copied and decided). `offsets`: each gold token's character span
    in the target; `pred[i]`: the model's most likely token where `gold[i]` stands; `decisions`: token ranges
    [start, end) of the target's decisions. A token that straddles a line's edge (a quote and its first
    letter) counts with the line."""
    decided_at = {i for a, b in decisions for i in range(a, b)}
    rows = []
    for group, line, start, end in spans:
        toks = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        right = {i: pred[i] == gold[i] for i in toks}
        miss = next((i for i, ok in right.items() if not ok), None)
        rows.append(
            {
                "group": group,
                "broken": " -> " in line,
                "exact": miss is None,
                "at": miss,
                "decided": all(ok for i, ok in right.items() if i in decided_at),
                "copied": all(ok for i, ok in right.items() if i not in decided_at),
            }
        )
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Lines, exact, decided and copied lines per group, the broken and the other lines apart; then the status
    (a single token: decided when exact)."""

    def count(mine: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "lines": len(mine),
            "exact": sum(r["exact"] for r in mine),
            "decided": sum(r.get("decided", r["exact"]) for r in mine),
            "copied": sum(r.get("copied", r["exact"]) for r in mine),
        }

    table: dict[str, Any] = {}
    for group in FAMILIES:
        for kind, broken in (("broken", True), ("ok", False)):
            mine = [r for r in rows if r.get("group") == group and r["broken"] is broken]
            if mine:
                table[f"{group} {kind}"] = count(mine)
    for kind, broken in (("broken", True), ("ok", False)):
        table[f"all {kind}"] = count([r for r in rows if "group" in r and r["broken"] is broken])
    table["status"] = count([r for r in rows if "status" in r])
    for v in table.values():
        v["share"] = v["exact"] / v["lines"] if v["lines"] else 0.0
    return table


def teacher_forced(
    gen: Any, prompt: str, target: str
) -> tuple[list[tuple[int, int]], list[int], list[int]] | None:
    """One forward pass of `gen` (an `HFGenerator`) over the user turn `prompt` and the answer `target`: the
    target's token offsets, its tokens, and at each of them the Judge's most likely token; None when the two
    outgrow the model's context."""
    import torch

    ids = gen.chat.prompt_ids([{"role": "user", "content": prompt}])
    enc = gen.chat.tok(target, add_special_tokens=False, return_offsets_mapping=True)
    gold, offsets = enc["input_ids"], enc["offset_mapping"]
    if len(ids) + len(gold) > gen.context:
        return None
    with torch.inference_mode():
        logits = gen.model(torch.tensor([ids + gold])).logits[0]
    # the token at gold[i] is predicted from the position before it
    return offsets, gold, logits[len(ids) - 1 : len(ids) + len(gold) - 1].argmax(-1).tolist()


def read_lines(gen: Any, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every check line of every single case in `records`, teacher-forced through `gen` (an `HFGenerator`):
    `line_misses`' rows with the case id, the line, and for a miss the text before it, the token wanted and
    the token the Judge would write; then one row a case for its status (the first token after `"status": "`).
    A case whose prompt and target outgrow the model's context is skipped (none of the default set's do)."""
    chat, rows = gen.chat, []
    for rec in records:
        target, parts = audit_target(rec)
        spans = line_spans(target, parts)
        read = teacher_forced(gen, rec["prompt"], target)
        if read is None:
            continue
        offsets, gold, pred = read
        decisions = process_spans(target, offsets)["verdict"]
        misses = line_misses(spans, offsets, gold, pred, decisions)
        for (_, line, start, _), row in zip(spans, misses, strict=True):
            row.update(id=rec["id"], line=line)
            if row["at"] is not None:
                i = row["at"]
                row.update(
                    before=target[start : offsets[i][0]],
                    want=chat.tok.decode(gold[i : i + 1]),
                    got=chat.tok.decode(pred[i : i + 1]),
                )
            rows.append(row)
        s = target.index(STATUS_AT) + len(STATUS_AT)
        i = next(i for i, (a, b) in enumerate(offsets) if a <= s < b)
        rows.append(
            {"id": rec["id"], "status": rec["label"]["status"], "broken": False, "exact": pred[i] == gold[i]}
        )
    return rows
