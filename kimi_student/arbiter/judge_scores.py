"""How a Judge's outputs score against the rule oracle. Pure: texts and labels in, numbers out.

Reading an output: the first JSON object in the text. Valid raw: it parses and passes `verdict_problems`
(single cases) or names a winner a/b/tie (pairs). Repaired: no JSON object with a status (output cut short,
broken JSON), but exactly one status word (and clause names) in the text: the verdict those words make. A
whole verdict that breaks the rules (PASS naming a clause) is not repaired. Neither: an error, counted apart and as a
miss, never mapped to PASS or FAIL.

Metrics (single cases; errors count as misses in every rate, with the oracle's status as truth):
- agreement: share of cases whose status is the oracle's; kappa: Cohen's kappa over the three statuses
  (an error is a fourth predicted class, so it lowers kappa too);
- fail_recall: share of FAIL cases judged FAIL; fail_called_pass: share of FAIL cases judged PASS;
  waiver_recall: share of WAIVER_REQUIRED cases judged WAIVER_REQUIRED;
- clause F1 per clause over violated clauses (multi-label, errors predict none), and their macro mean;
- ece (10 equal-width bins of the judge's probability for its status) and brier (three-way, mean over
  cases of the squared distance between its status probabilities and the one-hot truth), where given.
Pairs: accuracy on pairs the oracle does not tie; swap consistency: share of pairs whose two orders give
mirrored winners (a<->b, tie<->tie).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kimi_student.arbiter.documents import CLAUSES
from kimi_student.arbiter.verdict import STATUSES, verdict_problems

_STATUS_WORD = re.compile(r"\b(WAIVER_REQUIRED|PASS|FAIL)\b")
_CLAUSE_WORD = re.compile(r"\b(" + "|".join(CLAUSES) + r")\b")
MIRROR = {"a": "b", "b": "a", "tie": "tie"}


@dataclass(frozen=True)
class Reading:
    """A judge output as read: what it says (None: an error) and how it was read."""

    value: dict[str, Any] | None
    how: str  # raw | repaired | error
    problem: str = ""


def first_json_object(text: str) -> Any:
    """The first `{...}` in `text` that parses as JSON, or None."""
    dec = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            return dec.raw_decode(text, m.start())[0]
        except json.JSONDecodeError:
            continue
    return None


def read_verdict(text: str) -> Reading:
    obj = first_json_object(text)
    problems = verdict_problems(obj) if isinstance(obj, dict) else ("no JSON object",)
    if not problems:
        return Reading(obj, "raw")
    statuses = set(_STATUS_WORD.findall(text))
    if isinstance(obj, dict) and "status" in obj:  # a whole verdict that breaks the rules is not repaired
        return Reading(None, "error", problems[0])
    if len(statuses) == 1:
        status = statuses.pop()
        clauses = [c for c in CLAUSES if c in set(_CLAUSE_WORD.findall(text))] if status != "PASS" else []
        repaired = {
            "status": status,
            "violated_clauses": clauses,
            "rationale": "(repaired from unparseable output)",
        }
        if not verdict_problems(repaired):
            return Reading(repaired, "repaired", problems[0])
    return Reading(None, "error", problems[0])


def read_winner(text: str) -> Reading:
    obj = first_json_object(text)
    if isinstance(obj, dict) and obj.get("winner") in MIRROR:
        return Reading({"winner": obj["winner"]}, "raw")
    words = set(re.findall(r'"winner"\s*:\s*"(a|b|tie)"', text))
    if len(words) == 1:
        return Reading({"winner": words.pop()}, "repaired", "not a JSON object with a winner")
    return Reading(None, "error", "no winner a, b or tie")


def _kappa(gold: Sequence[str], pred: Sequence[str]) -> float:
    n = len(gold)
    if n == 0:
        return 0.0
    labels = sorted(set(gold) | set(pred))
    observed = sum(g == p for g, p in zip(gold, pred)) / n
    expected = sum((gold.count(k) / n) * (pred.count(k) / n) for k in labels)
    return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def calibration(gold: Sequence[str], probs: Sequence[dict[str, float]], bins: int = 10) -> dict[str, float]:
    """ECE of the top status's probability and the three-way Brier score."""
    n = len(gold)
    if n == 0:
        return {"ece": 0.0, "brier": 0.0}
    conf_sum, hit_sum, count = [0.0] * bins, [0.0] * bins, [0] * bins
    brier = 0.0
    for g, p in zip(gold, probs):
        top = max(STATUSES, key=lambda s: p.get(s, 0.0))
        c = p.get(top, 0.0)
        b = min(int(c * bins), bins - 1)
        conf_sum[b] += c
        hit_sum[b] += float(top == g)
        count[b] += 1
        brier += sum((p.get(s, 0.0) - float(s == g)) ** 2 for s in STATUSES)
    ece = sum(abs(hit_sum[b] - conf_sum[b]) for b in range(bins)) / n
    return {"ece": ece, "brier": brier / n}


def score_singles(
    gold: Sequence[dict[str, Any]],
    outputs: Sequence[str],
    probs: Sequence[dict[str, float]] | None = None,
    raw: Sequence[str] | None = None,
) -> dict[str, Any]:
    """`gold`: the oracle's labels ({status, violated_clauses}); `outputs`: the judge's texts, same order;
    `raw`: its free outputs where `outputs` were ruled again under a grammar (raw validity is theirs)."""
    readings = [read_verdict(t) for t in outputs]
    raw_readings = readings if raw is None else [read_verdict(t) for t in raw]
    g_status = [g["status"] for g in gold]
    p_status = [r.value["status"] if r.value else "ERROR" for r in readings]
    n = len(gold)

    def recall(status: str, as_: str) -> float:
        idx = [i for i, s in enumerate(g_status) if s == status]
        return sum(p_status[i] == as_ for i in idx) / len(idx) if idx else 0.0

    per_clause = {}
    for c in CLAUSES:
        tp = fp = fn = 0
        for g, r in zip(gold, readings):
            want = c in g["violated_clauses"]
            got = bool(r.value) and c in r.value["violated_clauses"]
            tp, fp, fn = tp + (want and got), fp + (got and not want), fn + (want and not got)
        per_clause[c] = {"f1": _f1(tp, fp, fn), "support": tp + fn}
    out = {
        "cases": n,
        "raw_valid_rate": sum(r.how == "raw" for r in raw_readings) / max(1, n),
        "valid_rate": sum(r.how != "error" for r in readings) / max(1, n),
        "errors": sum(r.how == "error" for r in readings),
        "agreement": sum(g == p for g, p in zip(g_status, p_status)) / max(1, n),
        "kappa": _kappa(g_status, p_status),
        "fail_recall": recall("FAIL", "FAIL"),
        "fail_called_pass": recall("FAIL", "PASS"),
        "waiver_recall": recall("WAIVER_REQUIRED", "WAIVER_REQUIRED"),
        "clause_f1": per_clause,
        "clause_f1_macro": sum(v["f1"] for v in per_clause.values()) / len(per_clause),
        "clause_f1_min": min(v["f1"] for v in per_clause.values()),
        "base_rates": {s: g_status.count(s) / max(1, n) for s in STATUSES},
    }
    if probs is not None:
        out.update(calibration(g_status, probs))
    return out


def score_worksheets(
    said: Sequence[Sequence[str] | None], want: Sequence[Sequence[tuple[str, str]]]
) -> dict[str, Any]:
    """Free check lines against the oracle's, for the cases whose output opens a worksheet (`said`: its
    complete lines, None: no worksheet; `want`: the oracle's lines with their families): how many are the
    oracle's exactly, and where each other one first parts from them, by the family of the oracle's line
    there (`missing`: it stopped early, `extra`: it wrote more); `lines_right_before_first_error`: the mean
    share of the oracle's lines written before that point. Diagnostics of free decoding, not gated."""
    first: dict[str, int] = {}
    exact, shares, n = 0, [], 0
    for got, parts in zip(said, want, strict=True):
        if got is None:
            continue
        n += 1
        lines = [line for _, line in parts]
        j = next((i for i, (a, b) in enumerate(zip(got, lines)) if a != b), min(len(got), len(lines)))
        shares.append(j / max(1, len(lines)))
        if j == len(got) == len(lines):
            exact += 1
            continue
        where = parts[j][0] if j < len(got) and j < len(lines) else "missing" if j < len(lines) else "extra"
        first[where] = first.get(where, 0) + 1
    return {
        "cases": n,
        "exact": exact,
        "first_error_by_family": dict(sorted(first.items())),
        "lines_right_before_first_error": sum(shares) / max(1, n),
    }


def score_pairs(
    records: Sequence[dict[str, Any]], outputs: Sequence[str], raw: Sequence[str] | None = None
) -> dict[str, Any]:
    """`records`: pair records (id ending -ab/-ba, label.winner); `outputs`: the judge's texts, same order;
    `raw`: its free outputs where `outputs` were ruled again under a grammar (raw validity is theirs)."""
    readings = [read_winner(t) for t in outputs]
    raw_readings = readings if raw is None else [read_winner(t) for t in raw]
    pred = {r["id"]: (x.value["winner"] if x.value else "ERROR") for r, x in zip(records, readings)}
    gold = {r["id"]: r["label"]["winner"] for r in records}
    decided = [i for i in gold if gold[i] != "tie"]
    stems = sorted({i[:-3] for i in gold if i[:-3] + "-ab" in gold and i[:-3] + "-ba" in gold})
    consistent = sum(pred[s + "-ba"] == MIRROR.get(pred[s + "-ab"], "") for s in stems)
    return {
        "pair_records": len(records),
        "raw_valid_rate": sum(x.how == "raw" for x in raw_readings) / max(1, len(readings)),
        "errors": sum(x.how == "error" for x in readings),
        "pairwise_accuracy": sum(pred[i] == gold[i] for i in decided) / max(1, len(decided)),
        "swap_consistency": consistent / max(1, len(stems)),
    }


def flip_rate(before: Sequence[str], after: Sequence[str], keep: Sequence[bool] | None = None) -> float:
    """Share of cases whose status changed between two runs (e.g. rationale padded to twice its length);
    an error on either side counts as a flip. `keep`: only the cases marked True count (those whose right
    status did not change between the runs)."""
    kept = [
        (read_verdict(x).value, read_verdict(y).value)
        for x, y, k in zip(before, after, keep or [True] * len(before))
        if k
    ]
    flips = sum(x is None or y is None or x["status"] != y["status"] for x, y in kept)
    return flips / max(1, len(kept))


def _said(row: dict[str, Any], key: str = "output") -> Any:
    """What a results row's output says: (status, clauses) of a single case, the winner of a pair; None
    when it cannot be read."""
    if "padded_output" in row:
        v = read_verdict(row[key]).value
        return None if v is None else (v["status"], tuple(sorted(v["violated_clauses"])))
    w = read_winner(row[key]).value
    return None if w is None else w["winner"]


def compare_results(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Two `judge eval` results files of one set (say PyTorch and its Core ML export): the share of records
    whose verdict (status and clauses; a pair's winner) is the same, also under the padded rationale, whose
    output text is the same, the largest difference in a status probability, and the records that differ.
    Raises ValueError when the files do not hold the same records."""
    if [r["id"] for r in a] != [r["id"] for r in b]:
        raise ValueError("the two results files do not hold the same records in the same order")
    singles = [(x, y) for x, y in zip(a, b) if "padded_output" in x]
    differ = [x["id"] for x, y in zip(a, b) if _said(x) != _said(y)]
    differ_padded = [x["id"] for x, y in singles if _said(x, "padded_output") != _said(y, "padded_output")]
    prob_gap = max(
        (
            abs(x["status_probabilities"][s] - y["status_probabilities"][s])
            for x, y in singles
            for s in STATUSES
        ),
        default=0.0,
    )
    n = max(1, len(a))
    return {
        "records": len(a),
        "single_cases": len(singles),
        "verdicts_identical": 1 - len(differ) / n,
        "padded_verdicts_identical": 1 - len(differ_padded) / max(1, len(singles)),
        "outputs_identical": sum(x["output"] == y["output"] for x, y in zip(a, b)) / n,
        "status_probability_max_diff": prob_gap,
        "differ": differ,
        "differ_padded": differ_padded,
    }
