"""Per-item scoring and run-level metrics (DESIGN.md section 4). Pure: no files, no clocks."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field, fields
from operator import attrgetter, itemgetter, le
from typing import Any

from kimi_student.chat.transcript import (
    SPAN_CAP,
    Transcript,
    integration_spans,
    normalize_text,
    parse_transcript,
    without_calls,
)
from kimi_student.eval.score.call_match import match_calls
from kimi_student.eval.score.claims import Claim, Sources, find_claims
from kimi_student.eval.score.grounding import Span, Value, evidence_values, result_values
from kimi_student.eval.score.schema_valid import schema_valid
from kimi_student.eval.score.tool_span import SpanCounts, call_pairs, pair_counts
from kimi_student.fingerprint import canonical_json
from kimi_student.privacy import privacy_violations
from kimi_student.tokenizer import TokenizerHandle, at_boundary, boundaries, token_range
from kimi_student.tools.broker import ToolBroker
from kimi_student.tools.registry import registry

CONTROL_BEHAVIOURS = ("no_tool", "decline")
UNSUPPORTED_SHOWN = 10  # unsupported claims kept per row: enough to see what was made up
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_START, _END = itemgetter(0), itemgetter(1)


def scrub_surrogates(text: str) -> tuple[str, str | None]:
    """`text` with each lone surrogate (not Unicode: it cannot be encoded, tokenized or written) replaced
    by U+FFFD, and why, if any was."""
    if text.isascii():
        return text, None
    clean, n = _SURROGATE.subn("\ufffd", text)
    return clean, f"output held {n} lone surrogate(s), replaced by U+FFFD before scoring" if n else None


def _joined(*errors: str | None) -> str | None:
    return "; ".join(e for e in errors if e) or None


def gold_evidence(
    item: dict[str, Any], values: list[Value] | None = None, spans: list[Span] | None = None
) -> list[Value]:
    """Evidence values of the item's tool results that its own gold integration spans contain.
    `values`, `spans`: evidence_values of the item's tool results and the gold text's spans, where the
    caller has them already.

    Literally: a URL counts only where the gold text names that URL, not a sibling on the same host."""
    if values is None:
        values = evidence_values(item["metadata"]["tool_results"])
    if spans is None:
        spans = [Span(t) for t in parse_transcript(item["teacher_text"]).span_texts()]
    return [v for v in values if any(s.lax_contains(v, url_by_host=False) for s in spans)]


def gold_claims(
    item: dict[str, Any], spans: list[Span] | None = None, claims: list[list[Claim]] | None = None
) -> Sources:
    """The claims of the item's own gold integration spans: what a claim of a span must also be to count
    strictly (a value the gold answer needs, not one it left out). `claims`: find_claims of each of
    those spans, where the caller has them (only their texts matter, not where they are)."""
    if claims is None:
        if spans is None:
            spans = [Span(t) for t in parse_transcript(item["teacher_text"]).span_texts()]
        claims = [find_claims(sp.text) for sp in spans]
    return Sources([c.text for found in claims for c in found])


@dataclass
class ItemScore:
    id: str
    control: bool
    eligible: bool
    spans: int = 0  # every integration span, those past the cap too
    span_cap_exceeded: bool = False
    claims: int = 0  # claims in the spans (a span that claims nothing counts as one claim, never grounded)
    claims_lax: int = 0  # of them, supported by the tool results
    claims_strict: int = 0  # of them, token-aligned and claimed by the item's gold answer too
    gold_evidence: int = 0
    found_lax: int = 0
    found_strict: int = 0
    spans_token_aligned: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    call_sequence_ok: bool | None = None
    calls_expected: int = 0
    calls_matched: int = 0
    calls_emitted: int = 0  # named calls, the ones call_match can compare
    call_errors: dict[str, int] = field(default_factory=dict)  # call_match error type -> count
    call_pairs_tp: int = 0  # tool-call (key, value) pairs, as kimi_student.eval.score.tool_span counts them
    call_pairs_fp: int = 0
    call_pairs_fn: int = 0
    control_violation: bool = False
    hallucinations: int = 0  # claims of the answer (any sentence) that nothing supports
    unsupported_claims: list[str] = field(default_factory=list)
    privacy_ok: bool = True
    privacy_violations: list[str] = field(default_factory=list)
    error: str | None = None
    # The conversation outgrew the model's context (the runner's finish `context`): scored as it is, so
    # nothing is dropped, and counted apart in the summary so a reader sees why.
    over_context: bool = False

    @staticmethod
    def f1(p_num: int, p_den: int, r_num: int, r_den: int) -> float:
        p = p_num / p_den if p_den else 0.0
        r = r_num / r_den if r_den else 0.0
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["f1_lax"] = self.f1(self.claims_lax, self.claims, self.found_lax, self.gold_evidence)
        d["f1_strict"] = self.f1(self.claims_strict, self.claims, self.found_strict, self.gold_evidence)
        return d

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ItemScore:
        """Rebuild a score from a results row (extra keys such as `output` and `f1_lax` are ignored; a row
        written before `over_context` existed did not outgrow its context)."""
        if "over_context" not in row:
            row = {**row, "over_context": False}
        return cls(*_SCORE_FIELDS(row))


OVER_CONTEXT_IDS = 50  # the summary names at most this many of the items that outgrew the context
_SCORE_FIELDS = itemgetter(*(f.name for f in fields(ItemScore)))  # in the order __init__ takes them


def score_item(
    item: dict[str, Any],
    output: str,
    tokenized: tuple[list[int], list[tuple[int, int]]],
    tokenizer: TokenizerHandle,
    broker: ToolBroker,
    error: str | None = None,
) -> ItemScore:
    """Score one transcript against its gold item. `tokenized` is the output's (ids, char offsets): of
    all its tokens, or of every token from a point at or before its first integration span (as
    tokens.encode_answers gives them: offsets in the whole text).

    Any text the model wrote gives a score: an output with lone surrogates is scored with U+FFFD in their
    place, and a fault of the scorer itself on some output gives an error row (privacy not shown ok),
    with the reason, rather than stop the run."""
    clean, scrubbed = scrub_surrogates(output)
    error = _joined(error, scrubbed)
    try:
        return _score_item(item, output, clean, tokenized, tokenizer, broker, error)
    except (ValueError, TypeError, OverflowError, RecursionError, KeyError, IndexError) as e:
        why = "nested too deep" if isinstance(e, RecursionError) else f"{type(e).__name__}: {e}"[:300]
        return failed_score(item, _joined(error, f"the output could not be scored ({why})"))


def failed_score(item: dict[str, Any], error: str) -> ItemScore:
    """An error row: nothing found, and privacy not ok (an output that was not scanned is not clean)."""
    meta = item["metadata"]
    control = meta["expected_behaviour"] in CONTROL_BEHAVIOURS
    gold_calls = meta["call_sequence"]
    gold_values = gold_evidence(item) if not control and gold_calls else []
    sc = ItemScore(item["id"], control, eligible=bool(gold_values), error=error)
    sc.calls_expected, sc.gold_evidence = len(gold_calls), len(gold_values)
    sc.privacy_ok, sc.privacy_violations = False, ["output not scanned: it could not be scored"]
    return sc


class _Bounds:
    """`pos in tokenizer.boundaries(text, offsets)`, asked of only the tokens that can hold `pos`.

    boundaries() is the union of each token's positions, all inside [start, end] of that token, so only
    tokens with start <= pos <= end matter; where both starts and ends never decrease and no token ends
    before it starts (byte-level BPE offsets), bisection finds them. Otherwise the whole set is computed,
    once."""

    def __init__(self, text: str, offsets: list[tuple[int, int]]):
        self.text, self.offsets = text, offsets
        self.whole: set[int] | None = None
        self.checked = False

    def __contains__(self, pos: object) -> bool:
        if not self.checked:  # sorted as (start, end) pairs: starts never decrease; then the ends
            offs = self.offsets
            ends = list(map(_END, offs))
            if offs != sorted(offs) or ends != sorted(ends) or not all(map(le, map(_START, offs), ends)):
                self.whole = boundaries(self.text, self.offsets)
            self.checked = True
        if self.whole is not None:
            return pos in self.whole
        if not isinstance(pos, int):
            return False
        lo = bisect_left(self.offsets, pos, key=_END)  # the first token ending at or after pos
        hi = bisect_right(self.offsets, pos, key=_START)  # past the last token starting at or before pos
        return at_boundary(self.text, self.offsets[lo:hi], pos)


def _score_item(
    item: dict[str, Any],
    original: str,
    output: str,
    tokenized: tuple[list[int], list[tuple[int, int]]],
    tokenizer: TokenizerHandle,
    broker: ToolBroker,
    error: str | None,
) -> ItemScore:
    normalized = normalize_text(output)
    if normalized != original:  # scoring positions refer to the NFC + LF form, as dataset offsets do
        output, tokenized = normalized, tokenizer.encode_offsets([normalized])[0]
    meta = item["metadata"]
    control = meta["expected_behaviour"] in CONTROL_BEHAVIOURS
    gold_calls = meta["call_sequence"]
    t = parse_transcript(output)
    spans = [Span(output[s:e], s) for s, e in integration_spans(output, t.answer_start, cap=None)]
    ev_vals = evidence_values(meta["tool_results"])
    # The gold text's spans are these where the output is the gold text (lax matching ignores `start`).
    gold_spans = spans[:SPAN_CAP] if output == item["teacher_text"] else None
    gold_values = gold_evidence(item, ev_vals, gold_spans) if not control and gold_calls else []
    sc = ItemScore(
        item["id"], control, eligible=not control and bool(gold_calls) and bool(gold_values), error=error
    )
    replies, arg_texts = _score_calls(sc, t, gold_calls, broker)

    bounds = _Bounds(output, tokenized[1])
    claims = [find_claims(sp.text, sp.start) for sp in spans]
    stated = None
    if sc.eligible:
        stated = gold_claims(item, gold_spans, claims[:SPAN_CAP] if gold_spans is not None else None)
    supported = Sources(r["result"] for r in meta["tool_results"])
    _score_spans(
        sc, spans, claims, supported, meta["tool_results"], gold_values, stated, tokenized, tokenizer, bounds
    )

    said = t.model_text(replies)
    prose = without_calls(said)
    if not control:  # a control item answers from what it knows: control_integration judges it
        made_up = _made_up(item, find_claims(prose), supported)
        sc.hallucinations, sc.unsupported_claims = len(made_up), made_up[:UNSUPPORTED_SHOWN]
    sc.control_violation = control and (bool(t.calls) or bool(spans))
    sc.privacy_violations = privacy_violations(item["prompt"], [said, *arg_texts])
    sc.privacy_ok = not sc.privacy_violations
    return sc


def _score_spans(
    sc: ItemScore,
    spans: list[Span],
    span_claims: list[list[Claim]],
    supported: Sources,
    results: list[dict[str, Any]],
    gold_values: list[Value],
    stated: Sources | None,
    tokenized: tuple[list[int], list[tuple[int, int]]],
    tokenizer: TokenizerHandle,
    bounds: _Bounds,
) -> None:
    """Integration spans into `sc`: claims and their grounding (precision), gold evidence found (recall),
    token alignment. `span_claims`: find_claims of each span; `supported`: the Sources of `results`;
    `stated`: the gold answer's claims (None where the item is not eligible)."""
    ids, offsets = tokenized
    # The result values are needed only for a span without claims; where the results hold an integer too
    # large for a float they are made at once, for the OverflowError (an error row) they always gave.
    lax_vals = result_values(results) if supported.huge_int else None
    capped = spans[:SPAN_CAP]
    sc.spans, sc.span_cap_exceeded = len(spans), len(spans) > SPAN_CAP
    for i, (sp, claims) in enumerate(zip(spans, span_claims)):
        sc.claims += max(1, len(claims))
        if i >= SPAN_CAP:  # a span past the cap is a violation: its claims count, ungrounded
            continue
        if claims:
            grounded = [c for c in claims if supported.supports(c)]
            sc.claims_lax += len(grounded)
            sc.claims_strict += stated is not None and sum(
                c.start in bounds and c.end in bounds and stated.supports(c) for c in grounded
            )
        else:  # plain words only: one claim, grounded by a result value the span contains
            if lax_vals is None:
                lax_vals = result_values(results)
            sc.claims_lax += any(sp.lax_contains(v) for v in lax_vals)
            sc.claims_strict += any(sp.strict_contains(v, bounds) for v in gold_values)
        first, last = token_range(offsets, sp.start, sp.start + len(sp.text))
        sc.spans_token_aligned += tokenizer.decode(ids[first:last]).strip() == sp.text.strip()
    sc.gold_evidence = len(gold_values)
    sc.found_lax = sum(any(sp.lax_contains(v) for sp in capped) for v in gold_values)
    sc.found_strict = sum(any(sp.strict_contains(v, bounds) for sp in capped) for v in gold_values)


def _all_sources(item: dict[str, Any], results: Sources | None = None) -> Sources:
    """What an answer may say: the tool results, the user's request, the gold calls' arguments (with
    their names) and the registry's tool names. `results`: the Sources of the tool results, if built."""
    meta = item["metadata"]
    if results is None:
        results = Sources(r["result"] for r in meta["tool_results"])
    return results.extended(
        [item["prompt"], sorted(registry())], keyed=[c["arguments"] for c in meta["call_sequence"]]
    )


def _made_up(item: dict[str, Any], claims: list[Claim], results: Sources) -> list[str]:
    """The claims that nothing in `_all_sources(item)` supports. The tool results' Sources are asked
    first: all sources hold their texts (first, so their joined text starts with theirs), numbers and URLs,
    so whatever they support all sources support, and the texts added are read only for a claim they do
    not. Not with a NaN among the numbers: then the order of all the numbers decides (Sources.has_nan)."""
    everything = _all_sources(item, results)
    results_first = not everything.has_nan
    return [
        c.text for c in claims if not (results_first and results.supports(c)) and not everything.supports(c)
    ]


def _score_calls(
    sc: ItemScore, t: Transcript, gold_calls: list[dict[str, Any]], broker: ToolBroker
) -> tuple[list[dict[str, Any] | None], list[str]]:
    """Tool calls: JSON/schema validity and fixture replay, into `sc`. Returns `replies`, the response the
    tool loop gives each call (so that only those blocks are taken out of the text the privacy scan
    reads), and the calls' arguments as canonical JSON."""
    arg_texts = []
    replies: list[dict[str, Any] | None] = []
    for c in t.calls:
        rec: dict[str, Any] = {"name": c.name, "valid": False, "hit": False}
        if c.error and c.name is None:
            broker.stats.calls += 1
            broker.stats.misses[("<unparsed>", c.error)] += 1
            rec["error"] = c.error
            replies.append({"ok": False, "error": "malformed_call", "message": c.error})
        else:
            rec["valid"] = c.error is None and schema_valid(c.name, c.arguments)
            reply = broker.call(c.name or "", c.arguments)
            rec.update(hit=reply.hit, key=reply.key)
            arg_texts.append(canonical_json(c.arguments))
            replies.append(reply.result)
        sc.calls.append(rec)
    sc.calls_expected = len(gold_calls)
    named = [{"name": c.name, "arguments": c.arguments} for c in t.calls if c.name]
    m = match_calls(gold_calls, named)
    sc.calls_matched, sc.calls_emitted, sc.call_errors = m.matched, m.emitted, dict(sorted(m.errors.items()))
    pairs = pair_counts(_all_pairs(gold_calls), _all_pairs(named))
    sc.call_pairs_tp, sc.call_pairs_fp, sc.call_pairs_fn = pairs.tp, pairs.fp, pairs.fn
    if len(gold_calls) >= 2:
        sc.call_sequence_ok = [c.name for c in t.calls] == [g["name"] for g in gold_calls]
    return replies, arg_texts


def _all_pairs(calls: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """The tool-span pairs of all `calls`, one bag (counted in place, not a new Counter per call)."""
    bag: Counter[tuple[str, str]] = Counter()
    for c in calls:
        bag.update(call_pairs(c))
    return bag


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def fixture_misses(calls: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """(tool, key) of every call the broker missed, from the calls' records: an unparsable call counts
    as ("<unparsed>", its parse error), as ToolBroker.stats does."""
    return Counter(
        (c["name"] or "", c["key"]) if "key" in c else ("<unparsed>", c["error"])
        for c in calls
        if not c["hit"]
    )


def summarize(scores: list[ItemScore]) -> dict[str, Any]:
    """Run-level metrics, from the scores alone (so result rows read back from disk give the same summary).
    A rate with nothing to count is None (reported, and its gate is inconclusive)."""
    el = [s for s in scores if s.eligible]
    calls = [c for s in scores for c in s.calls]
    multi = [s for s in scores if s.call_sequence_ok is not None]
    checked = [s for s in scores if not s.control]
    tot = {
        k: sum(map(attrgetter(k), el))
        for k in (
            "spans",
            "claims",
            "claims_lax",
            "claims_strict",
            "gold_evidence",
            "found_lax",
            "found_strict",
        )
    }
    f1 = ItemScore.f1
    pairs = SpanCounts(*(sum(map(attrgetter(f"call_pairs_{k}"), scores)) for k in ("tp", "fp", "fn")))
    macro_lax = [f1(s.claims_lax, s.claims, s.found_lax, s.gold_evidence) for s in el]  # as to_json's
    macro_strict = [f1(s.claims_strict, s.claims, s.found_strict, s.gold_evidence) for s in el]
    misses = fixture_misses(calls)
    errors: Counter[str] = Counter()
    for s in scores:
        errors.update(s.call_errors)
    return {
        "items": len(scores),
        "eligible_items": len(el),
        "control_items": sum(s.control for s in scores),
        "multi_call_items": len(multi),
        "error_items": sum(s.error is not None for s in scores),
        "over_context_items": sum(s.over_context for s in scores),
        "over_context_ids": [s.id for s in scores if s.over_context][:OVER_CONTEXT_IDS],
        "tool_calls": len(calls),
        "integration_spans": sum(s.spans for s in scores),
        "integration_counts": tot,
        "integration_precision_lax": _rate(tot["claims_lax"], tot["claims"]),
        "integration_recall_lax": _rate(tot["found_lax"], tot["gold_evidence"]),
        "integration_precision_strict": _rate(tot["claims_strict"], tot["claims"]),
        "integration_recall_strict": _rate(tot["found_strict"], tot["gold_evidence"]),
        "integration_f1_lax": f1(tot["claims_lax"], tot["claims"], tot["found_lax"], tot["gold_evidence"])
        if el
        else None,
        "integration_f1_strict": f1(
            tot["claims_strict"], tot["claims"], tot["found_strict"], tot["gold_evidence"]
        )
        if el
        else None,
        "integration_f1_lax_macro": sum(macro_lax) / len(el) if el else None,
        "integration_f1_strict_macro": sum(macro_strict) / len(el) if el else None,
        "hallucination_rate": _rate(sum(s.hallucinations > 0 for s in checked), len(checked)),
        "hallucinated_claims": sum(s.hallucinations for s in scores),
        "span_cap_violations": sum(s.span_cap_exceeded for s in scores),
        "privacy_ok_rate": _rate(sum(s.privacy_ok for s in scores), len(scores)),
        "control_integration": sum(s.control_violation for s in scores),
        "fixture_hit_rate": _rate(sum(c["hit"] for c in calls), len(calls)),
        "fixture_miss_count": sum(misses.values()),
        "fixture_misses": [{"tool": t, "key": k, "count": n} for (t, k), n in sorted(misses.items())],
        "json_args_valid_rate": _rate(sum(c["valid"] for c in calls), len(calls)),
        "call_sequence_parity": _rate(sum(bool(s.call_sequence_ok) for s in multi), len(multi)),
        # An extra call costs: matched / max(expected, emitted) pooled (call_match, DESIGN.md section 4).
        "call_accuracy": _rate(
            sum(s.calls_matched for s in scores), sum(max(s.calls_expected, s.calls_emitted) for s in scores)
        ),
        "call_error_types": {k: n for k, n in sorted(errors.items()) if n > 0},  # as Counter sums keep them
        "tool_call_f1": pairs.f1,
        "token_align_ok_rate": _rate(
            sum(s.spans_token_aligned for s in scores), sum(min(s.spans, SPAN_CAP) for s in scores)
        ),
    }


def gate_counts(summary: dict[str, Any]) -> dict[str, int]:
    """How many items each gate rests on (for the inconclusive rule)."""
    return {
        "integration_f1_lax": summary["eligible_items"],
        "integration_f1_strict": summary["eligible_items"],
        "hallucination_rate": summary["items"] - summary["control_items"],
        "privacy_ok_rate": summary["items"],
        "control_integration": summary["control_items"],
        "fixture_hit_rate": summary["tool_calls"],
        "json_args_valid_rate": summary["tool_calls"],
        "call_sequence_parity": summary["multi_call_items"],
    }
