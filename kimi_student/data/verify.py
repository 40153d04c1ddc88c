"""Verify a contextual dataset: every check a training or evaluation run relies on, and a coverage table."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kimi_student.chat.transcript import Transcript, parse_transcript
from kimi_student.data.accept import accept_problem, accepted_arguments
from kimi_student.data.contextual import COMPLEXITIES, SCENARIOS, STRUCTURES
from kimi_student.data.derive import underivable_argument
from kimi_student.data.disjoint import TrainingMemory, leaks
from kimi_student.data.extract import byte_offsets
from kimi_student.fingerprint import canonical_json
from kimi_student.jsonl import gc_paused
from kimi_student.numbers import LOCALES
from kimi_student.privacy import privacy_violations
from kimi_student.tokenizer import TokenizerHandle
from kimi_student.tools.broker import BrokerReply, ToolBroker
from kimi_student.tools.registry import args_valid, tool_registry_sha256

CAWS_RE = re.compile(r"^CAWS/1 level=[1-3] role=\w+ task=\w+\n")


@dataclass
class _Seen:
    """What one verify run has worked out already, each a pure function of its key: a call's (schema
    valid, broker reply) by (tool, canonical arguments), a teacher text's parse (read only), and the
    privacy findings for (prompt, texts): a third of the items at 10k repeat another's."""

    calls: dict[tuple[str, str], tuple[bool, BrokerReply]] = field(default_factory=dict)
    transcripts: dict[str, Transcript] = field(default_factory=dict)
    privacy: dict[tuple[str, ...], list[str]] = field(default_factory=dict)


def _check_item(
    item: dict[str, Any],
    broker: ToolBroker,
    ids: list[int] | None,
    tok: TokenizerHandle | None,
    problems: Counter[str],
    examples: dict[str, str],
    seen: _Seen,
) -> None:
    def bad(kind: str, detail: str) -> None:
        problems[kind] += 1
        examples.setdefault(kind, f"{item['id']}: {detail}")

    meta, text = item["metadata"], item["teacher_text"]
    if not CAWS_RE.match(item["prompt"]):
        bad("caws_header", "prompt does not start with a CAWS/1 header")
    t = seen.transcripts.get(text)
    if t is None:
        t = seen.transcripts[text] = parse_transcript(text)
    if [c.name for c in t.calls] != [c["name"] for c in meta["call_sequence"]]:
        bad("call_sequence", "teacher_text calls differ from metadata.call_sequence")
    arg_texts = [canonical_json(c["arguments"]) for c in meta["call_sequence"]]
    for c, gold, res, arg_text in zip(t.calls, meta["call_sequence"], meta["tool_results"], arg_texts):
        if c.error or c.arguments != gold["arguments"]:
            bad("call_json", f"{gold['name']}: {c.error or 'arguments differ from call_sequence'}")
        why = accept_problem(gold)
        if why:
            bad("call_accept", f"{gold['name']} {why}")
        # Schema validity and the fixture a call finds are functions of its canonical JSON: once each.
        known = seen.calls.get((gold["name"], arg_text))
        if known is None:
            known = seen.calls[(gold["name"], arg_text)] = (
                args_valid(gold["name"], gold["arguments"]),
                broker.lookup(gold["name"], gold["arguments"]),
            )
        valid, reply = known
        if not valid:
            bad("call_schema", f"{gold['name']} arguments fail the tool's JSON Schema")
        if not reply.hit:
            bad("fixture_missing", f"{gold['name']} {reply.key}")
        elif reply.result != res["result"]:
            bad("fixture_mismatch", f"{gold['name']} {reply.key}")
        elif not why and any(
            broker.lookup(gold["name"], a).result != reply.result for a in accepted_arguments(gold)
        ):
            bad("accept_fixture", f"{gold['name']}: a call its accept admits does not replay its result")
    table = byte_offsets(text, [p for span in t.spans for p in span])
    raw = text.encode("utf-8")
    if [[table[s], table[e]] for s, e in t.spans] != meta["integration_spans_bytes"]:
        bad("span_offsets", "integration_spans_bytes differ from the spans in teacher_text")
    for s, e in meta["integration_spans_bytes"]:
        if not 0 <= s < e <= len(raw):
            bad("span_bounds", f"[{s}, {e}) outside 0..{len(raw)}")
        elif not raw[s:e].decode("utf-8", "replace").startswith("Integration:"):
            bad("span_text", f"bytes [{s}, {e}) do not hold an integration span")
    if tok is not None:
        tok_spans = meta.get("integration_spans_tokens")
        if tok_spans is None:
            bad("token_spans_missing", "run `kimi-student contextual extract` first")
        else:
            for (bs, be), (ts, te) in zip(meta["integration_spans_bytes"], tok_spans):
                assert ids is not None  # encoded whenever an item has spans to check
                span_text = raw[bs:be].decode("utf-8", "replace")
                if not (0 <= ts < te <= len(ids)) or tok.decode(ids[ts:te]).strip() != span_text.strip():
                    bad("token_align", f"tokens [{ts}, {te}) do not decode to {span_text[:40]!r}")
    underivable = underivable_argument(item, [c.start for c in t.calls])
    if underivable:
        bad("call_underivable", f"{underivable} follows from neither the request nor an earlier response")
    control = meta["expected_behaviour"] in ("no_tool", "decline")
    if control and (t.calls or t.spans):
        bad("control", "a control item calls a tool or integrates")
    if not control and meta["call_sequence"] and not meta["negative_control"] and not t.spans:
        bad("no_integration", "a tool-using item has no integration span")
    texts = [t.model_text(), *arg_texts]
    key = (item["prompt"], *texts)
    leaks = seen.privacy.get(key)
    if leaks is None:
        leaks = seen.privacy[key] = privacy_violations(item["prompt"], texts)
    if leaks:
        bad("privacy", leaks[0])


def coverage(items: list[dict[str, Any]]) -> dict[str, Any]:
    meta = [it["metadata"] for it in items]
    by = {
        k: dict(sorted(Counter(m[k] for m in meta).items()))
        for k in ("scenario", "complexity", "structure", "locale", "expected_behaviour")
    }
    by["adversarial"] = dict(
        sorted(Counter((m.get("adversarial") or {}).get("kind", "none") for m in meta).items())
    )
    by["negative_control"] = sum(m["negative_control"] for m in meta)
    by["long_context"] = sum(bool(m.get("long_context")) for m in meta)
    cells = Counter((m["scenario"], m["structure"], m["complexity"], m["locale"]) for m in meta)
    possible = [
        (sc, st, cx, lo)
        for sc, sts in SCENARIOS.items()
        for st in sts
        for cx in COMPLEXITIES
        for lo in LOCALES
    ]
    covered = sum(1 for c in possible if cells[c])
    by["strata"] = {
        "possible": len(possible),
        "covered": covered,
        "fraction": covered / len(possible),
        "structures_known": list(STRUCTURES),
    }
    return by


def _heldout_problems(
    items: list[dict[str, Any]], train: list[dict[str, Any]], problems: Counter[str], examples: dict[str, str]
) -> list[str]:
    """Held-out leaks into `train` (data/disjoint.py): each offending value, and shared item ids."""
    found = leaks(items, TrainingMemory(train))
    if found:
        problems["heldout_leak"] += len(found)
        examples["heldout_leak"] = found[0] + " occurs in the training set"
    shared = sorted({it["id"] for it in items} & {it["id"] for it in train})
    if shared:
        problems["heldout_id"] += len(shared)
        examples["heldout_id"] = f"{shared[0]}: a training item has the same id"
    return found


def verify(
    header: dict[str, Any],
    items: list[dict[str, Any]],
    broker: ToolBroker,
    tok: TokenizerHandle | None,
    train: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A verify report: problem counts with one example each, and the coverage table; with `train`, the
    held-out check of `items` against it too (its first offending values under `heldout_leaks`)."""
    problems: Counter[str] = Counter()
    examples: dict[str, str] = {}
    found = _heldout_problems(items, train, problems, examples) if train is not None else None
    if header.get("tool_registry_sha256") != tool_registry_sha256():
        problems["header_registry"] += 1
        examples["header_registry"] = "dataset was made with a different tool registry"
    if tok is not None and header.get("tokenizer_fingerprint") not in (None, tok.fingerprint):
        problems["header_tokenizer"] += 1
        examples["header_tokenizer"] = "dataset was extracted with a different tokenizer"
    seen = _Seen()
    # Only an item with integration spans and their token spans has tokens to check.
    need = [
        tok is not None
        and bool(it["metadata"]["integration_spans_bytes"])
        and bool(it["metadata"].get("integration_spans_tokens"))
        for it in items
    ]
    with gc_paused():
        ids = tok.ids_each([it["teacher_text"] for it, n in zip(items, need) if n]) if tok else iter(())
        for it, n in zip(items, need):
            _check_item(it, broker, next(ids) if n else None, tok, problems, examples, seen)
    return {
        "items": len(items),
        "ok": not problems,
        "problems": dict(sorted(problems.items())),
        "examples": dict(sorted(examples.items())),
        "coverage": coverage(items),
        **({} if found is None else {"heldout_leaks": found[:20]}),
        "tool_registry_sha256": tool_registry_sha256(),
        "tokenizer_fingerprint": tok.fingerprint if tok else None,
    }
