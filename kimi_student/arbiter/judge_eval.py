"""`kimi-student judge eval` (make caws-eval): a Judge on the held-out Judge set, scored against the rule
oracle, gated by configs/judge_gates.yaml, written as a fingerprinted report. The Judge runs as its HF
checkpoint in PyTorch (`--runner hf_local`) or as its Core ML export in the MIL executor (`--runner coreml`,
`make caws-eval-coreml`); `judge compare` says whether two runs gave the same verdicts.

Three runs of the model over the set: greedy verdicts for the single cases and winners for the pairs (both
orders; `--pairwise rulings`: each pair's two candidates ruled as single cases and the better status wins);
the single cases again with each author's rationale written twice (a verdict must not move with the length
of the prose); and the probability of each status given the case and what the model wrote before
its status (the sequence probability of the status word after `"status": "`, normalised over the three), which calibration is
measured on. An output that is not a valid verdict (or winner) is ruled again under a grammar
(`--ruling grammar`, `arbiter/ruling.py`): its ruling decoded over the valid rulings only, after the check
lines it completed; raw validity is still counted on the free outputs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from kimi_student.arbiter.audit import WAIVER_LINE
from kimi_student.arbiter.cases import Candidate, Context, label, status_winner
from kimi_student.arbiter.copying import copy_picker
from kimi_student.arbiter.documents import CLAUSES
from kimi_student.arbiter.groups import ASK, GROUPS, case_of, questions
from kimi_student.arbiter.journal import Journal
from kimi_student.arbiter.judge_data import audit_target
from kimi_student.arbiter.judge_scores import (
    flip_rate,
    read_verdict,
    read_winner,
    score_pairs,
    score_singles,
    score_worksheets,
)
from kimi_student.arbiter.line_forms import LineForms, line_picker
from kimi_student.arbiter.render import Wording, render_single
from kimi_student.arbiter.ruling import (
    continuations,
    implied_ruling,
    rule_constrained,
    rule_pair_constrained,
    ruling_text,
    worksheet,
)
from kimi_student.arbiter.verdict import STATUSES
from kimi_student.errors import InputError
from kimi_student.eval.gates import evaluate_gates, load_gates, run_passed
from kimi_student.resources import config_path
from kimi_student.train.examples import process_spans

DEFAULT_GATES = config_path("judge_gates.yaml")
# A pair's ruling is short: `{"winner": "tie"}`, or in the reasoned form each candidate's status first
# (`{"a": "WAIVER_REQUIRED", "b": "WAIVER_REQUIRED", "winner": "tie"}`: 28 SmolLM2 tokens). Generation stops at
# the end token; this only bounds a Judge that never writes it.
PAIR_TOKENS = 48
# A JSON string item written this many times is a loop: the oracle's targets repeat one at most 4 times (a
# reasoned target's rule names; measured over the default set's three forms), and a greedy Judge that has
# written the same check line 6 times does not leave it (stop 41: 46 of 100 audit outputs looped to 900
# tokens, a third of the eval's time).
LOOP_REPEATS = 6
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
METRICS = (
    "agreement",
    "kappa",
    "fail_recall",
    "fail_called_pass",
    "waiver_recall",
    "clause_f1_macro",
    "clause_f1_min",
    "raw_valid_rate",
    "valid_rate",
    "pairwise_accuracy",
    "swap_consistency",
    "flip_rate",
    "ece",
    "brier",
)


def read_set(
    path: Path, limit: int | None
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The header, the single cases and the pair records (both orders of the first `limit` pairs)."""
    from kimi_student.jsonl import read_jsonl

    header: dict[str, Any] = {}
    singles, pairs = [], []
    for line, row in read_jsonl(path):
        if row.get("__header__"):
            header = row
            continue
        if row.get("mode") not in ("single", "pair") or not isinstance(row.get("prompt"), str):
            raise InputError(path, line, "mode", "not a Judge record (kimi-student judge data writes them)")
        (singles if row["mode"] == "single" else pairs).append(row)
    if header.get("dataset_version", "").split("-")[:2] != ["caws", "judge"]:
        raise InputError(path, 1, "dataset_version", "not a Judge set (no caws-judge header)")
    if limit is not None:
        singles = singles[:limit]
        stems = list(dict.fromkeys(r["id"][:-3] for r in pairs))[:limit]
        keep = set(stems)
        pairs = [r for r in pairs if r["id"][:-3] in keep]
    return header, singles, pairs


def padded_case(rec: dict[str, Any]) -> tuple[str, bool]:
    """The case again with the author's rationale written twice, and whether the oracle rules it as it rules
    the case (a terse rationale under the policy's word minimum can double over it: the right verdict
    changes, and such a case is no test of verbosity bias). The stored prompt is re-rendered first and must
    come out the same (else the record and the renderer disagree)."""
    ctx, cand, w = case_of(rec)
    if render_single(ctx, cand, w) != rec["prompt"]:
        raise InputError(None, None, rec["id"], "the stored prompt is not what its case renders to")
    padded = padded_candidate(cand)
    return render_single(ctx, padded, w), label(ctx, padded).status == rec["label"]["status"]


def padded_candidate(cand: Candidate) -> Candidate:
    """The candidate with its author's rationale written twice."""
    return dataclasses.replace(cand, rationale=f"{cand.rationale} {cand.rationale}")


def group_questions(singles: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """`--ask groups`: each single-case prompt the eval decodes (the case, its padded twin, a pair's two
    candidates) and its questions, one a group (`groups.questions`)."""
    cases = [case_of(r) for r in singles]
    cases += [(ctx, padded_candidate(cand), w) for ctx, cand, w in cases]
    cases += [c for r in pairs for c in pair_cases(r)]
    return {render_single(*c): questions(*c) for c in cases}


def looping(text: str) -> bool:
    """Whether an output repeats one JSON string LOOP_REPEATS times."""
    counts = Counter(_JSON_STRING.findall(text))
    return bool(counts) and max(counts.values()) >= LOOP_REPEATS


@dataclass
class LoopGuard:
    """A generator's stop rule that also stops a row once its output is `looping`: what it wrote is kept (and
    reads as an error, as it would at the token limit); only the decoding it would waste is saved. Checked
    when the newest token holds a quote, the only token that can close a string."""

    stop: Any
    tok: Any

    def stops(self, row: list[int]) -> bool:
        if self.stop.stops(row):
            return True
        if '"' not in self.tok.decode(row[-1:], skip_special_tokens=False):
            return False
        return looping(self.tok.decode(row, skip_special_tokens=False))


STATUS_KEY = '"status": "'


def status_probabilities(
    gen: Any, prompts: list[str], outputs: list[str] | None = None
) -> list[dict[str, float]]:
    """P(status | case) from the model's sequence probability of each status where its verdict states one:
    after the case and what the model itself wrote before `"status": "` (its reasoning, for a reasoned
    target; just `{` for a verdict that starts with its status, and for an output without a status),
    normalised over the three statuses (the tokens all three share are part of the prompt). A case longer
    than the Judge's context gets 1/3 each, as its verdict is an error: the model never saw it."""
    import numpy as np

    out = []
    for i, prompt in enumerate(prompts):
        said = outputs[i] if outputs is not None else ""
        before = said[: said.index(STATUS_KEY)] if STATUS_KEY in said else "{"
        base, rest = continuations(gen.chat, prompt, [f"{before}{STATUS_KEY}{s}" for s in STATUSES])
        if len(base) + max(map(len, rest)) - 1 > gen.context:  # a case the Judge cannot read: no preference
            out.append({s: 1 / len(STATUSES) for s in STATUSES})
            continue
        scores = np.array([sum(lp) for lp in gen.continuation_logprobs(base, rest)])
        z = np.exp(scores - scores.max())
        out.append({s: float(p) for s, p in zip(STATUSES, z / z.sum(), strict=True)})
    return out


RUNNERS = ("hf_local", "coreml")
# How a pair is ruled. direct: the Judge reads both candidates in one prompt and names the winner. rulings:
# the Judge rules each candidate as a single case (the pair's spec, policy and wording) and the candidate of
# the higher status wins, equal statuses tie, as the oracle ranks them (`cases.winner`): swapping the two
# cannot change the ruling, and a pair costs two single decodes.
PAIRWISE = ("direct", "rulings")
# How a single case's ruling is decoded. grammar: an output that is not a valid verdict is ruled again, its
# ruling (violated clauses, status, rationale) decoded greedily over the valid rulings only, after the check
# lines it completed (`ruling.rule_constrained`): every verdict is schema-valid; raw validity is still the
# free output's. free: the free output alone (one that breaks the schema is an error). lines: every single
# case is ruled as its own check lines imply (`ruling.implied_ruling`: a blocking fate fails it, waived fates
# alone need a waiver), whatever ruling the Judge wrote after them; an output without check lines is ruled as
# under grammar. The lines are the Judge's, the ruling their reading (stops 49-56: a 135M Judge's ruling
# often contradicts its own lines).
RULING = ("grammar", "free", "lines")
# How values are decoded. free: as the model writes them. case: every id, date, path, sha or score the Judge
# writes must be a whole run of the case's text (`copying.py`), each token still the model's most likely allowed
# one: a copy cannot slip, a choice is still the model's. lines: every check line must take a form of the
# training targets' lines with spans of the case in its slots (`line_forms.py`): no line cut short, out of form
# or copying what the case lacks. PyTorch only (the hf_local runner's greedy decoding).
COPY = ("free", "case", "lines")
FORMS = "train_audit_sft.jsonl"  # --copy lines: the training set beside --data, unless --forms names one


def scored_verdict(gen: Any, prompt: str, output: str) -> str:
    """A single case's output as scored under `--ruling grammar`: the output where it is a valid verdict,
    else the case ruled under the grammar after the check lines it completed (the output where the context
    leaves no room for a ruling)."""
    if read_verdict(output).how == "raw":
        return output
    return rule_constrained(gen, prompt, output, looping(output)) or output


def ruled_by_lines(gen: Any, prompt: str, output: str) -> str:
    """A single case's output as scored under `--ruling lines`: its complete check lines with the ruling they
    imply (`scored_verdict` where it wrote none)."""
    checks = worksheet(output, looping(output))
    if not checks:
        return scored_verdict(gen, prompt, output)
    return ruling_text(checks, *implied_ruling(checks))


def scored_winner(gen: Any, prompt: str, output: str) -> str:
    """A direct pair's output as scored under `--ruling grammar`: the output where it names a winner, else the
    pair ruled over the pair rulings."""
    if read_winner(output).how == "raw":
        return output
    return rule_pair_constrained(gen, prompt) or output


def pair_cases(rec: dict[str, Any]) -> list[tuple[Context, Candidate, Wording]]:
    """A pair record's two candidates, each with the pair's context and wording, in its order (a, b)."""
    ctx, a, w = case_of(rec)
    return [(ctx, a, w), (ctx, case_of(rec, 1)[1], w)]


def pair_candidates(rec: dict[str, Any]) -> list[str]:
    """A pair record's two candidates as single cases, in its order (a, b)."""
    return [render_single(*c) for c in pair_cases(rec)]


def answers_of(output: str) -> list[str]:
    """`--ask groups`: a case's raw output is the JSON list of its answers, one a group."""
    return [str(a) for a in json.loads(output)]


def group_worksheet(output: str) -> tuple[list[str], bool]:
    """`--ask groups`: a case's worksheet from its answers (one a group, in `GROUPS` order): the waiver lines
    of the first answer, then each answer's other complete lines; and whether every answer is what it was asked
    for, a JSON object holding a list of check lines and nothing else."""
    answers = answers_of(output)
    sheets = [worksheet(a, looping(a)) or [] for a in answers]
    checks = [line for line in sheets[0] if line.startswith(WAIVER_LINE)] if sheets else []
    checks += [line for sheet in sheets for line in sheet if not line.startswith(WAIVER_LINE)]
    return checks, all(_checks_only(a) for a in answers)


def _checks_only(text: str) -> bool:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and list(obj) == ["checks"] and isinstance(obj["checks"], list)


def ruled_by_groups(gen: Any, prompt: str, output: str) -> str:
    """A case asked per group, as scored: the worksheet of its answers with the ruling those lines imply; where
    no answer holds a complete line, its raw output (no verdict: an error)."""
    checks, _ = group_worksheet(output)
    return ruling_text(checks, *implied_ruling(checks)) if checks else output


def decisions_logprob(gen: Any, prompt: str, answer: str) -> float:
    """log p the Judge gives its own decisions in one answer (the tokens of the process kind `verdict`: each
    check's outcome and the choices before it), the answer read after its question; 0 where it holds none or
    does not fit the context."""
    enc = gen.chat.tok(answer, add_special_tokens=False, return_offsets_mapping=True)
    spans = process_spans(answer, enc["offset_mapping"])["verdict"]
    base = gen.chat.prompt_ids([{"role": "user", "content": prompt}])
    if not spans or len(base) + len(enc["input_ids"]) > gen.context:
        return 0.0
    [lps] = gen.continuation_logprobs(base, [enc["input_ids"]])
    return sum(lps[i] for a, b in spans for i in range(a, b))


def group_probabilities(gen: Any, questions: list[str], output: str, scored: str) -> dict[str, float]:
    """P(status) of a case asked per group: the status its lines imply gets the probability the Judge gives
    all its decisions (the product over its answers), the other two share the rest; an unreadable case: a
    third each. The Judge writes no status, so its confidence is that of the decisions the status rests on."""
    v = read_verdict(scored).value
    if v is None:
        return {s: 1 / len(STATUSES) for s in STATUSES}
    p = math.exp(
        sum(decisions_logprob(gen, q, a) for q, a in zip(questions, answers_of(output), strict=True))
    )
    return {s: p if s == v["status"] else (1 - p) / (len(STATUSES) - 1) for s in STATUSES}


def ruled_pair(a: str, b: str) -> str:
    """A pair's ruling from its two candidates' verdicts, written as a reasoned pair target (each status, then
    the winner). Each verdict is read as a single case's is (`read_verdict`: one repaired from a lone status
    word counts); a candidate whose verdict cannot be read leaves the pair unreadable too."""
    va, vb = read_verdict(a).value, read_verdict(b).value
    if va is None or vb is None:
        return f"no ruling: candidate {'a' if va is None else 'b'}'s verdict is unreadable"
    return json.dumps(
        {"a": va["status"], "b": vb["status"], "winner": status_winner(va["status"], vb["status"])}
    )


def judge_generator(runner: str, model: Path, max_new_tokens: int, batch_size: int, dtype: str) -> Any:
    """The Judge as a generator: an HF checkpoint in PyTorch (hf_local), or its Core ML export run in the
    MIL executor (coreml: `export coreml`'s folder; the stateful decoder when it holds one)."""
    if runner == "hf_local":
        from kimi_student.eval.runners.hf_local import HFGenerator

        return HFGenerator(model, max_new_tokens=max_new_tokens, batch_size=batch_size, dtype=dtype)
    if runner == "coreml":
        from kimi_student.eval.runners.coreml import CoreMLGenerator
        from kimi_student.export.greedy import NgramDrafter

        gen = CoreMLGenerator(model, max_new_tokens=max_new_tokens, backend="mil_exec")
        gen.drafter = NgramDrafter(verdict_syntax(gen.chat), max_n=3, k=16)
        return gen
    raise InputError(None, None, "runner", f"{runner!r}: use one of {', '.join(RUNNERS)}")


def verdict_syntax(chat: Any) -> list[list[int]]:
    """Token ids of a verdict's and a winner's fixed parts: draft material (the output is greedy's either
    way; a guess only saves calls when it is right)."""
    texts = [
        json.dumps({"status": "PASS", "violated_clauses": [], "rationale": "PASS: no clause is violated."})
    ]
    texts += [f'{{"status": "{s}", "violated_clauses": ["' for s in STATUSES]
    texts += [f'"{c}", "' for c in CLAUSES] + [f'"{c}"], "rationale": "' for c in CLAUSES]
    texts += [json.dumps({"winner": w}) for w in ("a", "b", "tie")]
    return [chat.tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def run_key(
    fingerprint: str,
    data: Path,
    limit: int | None,
    batch_size: int,
    dtype: str,
    max_new_tokens: int,
    runner: str,
    pairwise: str = "direct",
    ruling: str = "grammar",
    copy: str = "free",
    forms_sha256: str | None = None,
    ask: str = "case",
) -> dict[str, Any]:
    """Everything a Judge's outputs on a set depend on: a journal of another key is not resumed from."""
    from kimi_student.fingerprint import code_version, sha256_file

    return {
        "model_fingerprint": fingerprint,
        "dataset_sha256": sha256_file(data),
        "limit": limit,
        "batch_size": batch_size,  # batches are padded: a row's numbers depend on its batch
        "dtype": dtype,
        "max_new_tokens": max_new_tokens,
        "runner": runner,
        "pairwise": pairwise,
        "ruling": ruling,
        "copy": copy,
        **({"forms_sha256": forms_sha256} if forms_sha256 else {}),
        "ask": ask,
        "code_version": code_version(),
    }


def evaluate(
    model: Path,
    data: Path,
    gates_path: Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    dtype: str = "fp32",
    max_new_tokens: int = 400,
    runner: str = "hf_local",
    progress: bool = False,
    journal: Path | None = None,
    pairwise: str = "direct",
    ruling: str = "grammar",
    copy: str = "free",
    forms: Path | None = None,
    ask: str = "case",
) -> tuple[dict[str, Any], list[dict]]:
    """The report and the per-record results. `journal`: where each decoded chunk is appended (and read
    back from, when a killed run of the same key left it); removed by the caller once the report is
    written. `pairwise`: how pairs are ruled (`PAIRWISE`); `ruling`: how a single case's ruling is
    decoded (`RULING`); `copy`: how its values are (`COPY`); `forms`: the audit training set whose lines'
    forms `copy="lines"` holds the check lines to (default: FORMS beside `data`); `ask`: how a single case is
    put to the Judge (`groups.ASK`; under groups a case's raw output is the JSON list of its answers)."""
    from tqdm import tqdm

    from kimi_student.eval.report import created_at
    from kimi_student.fingerprint import sha256_file

    if pairwise not in PAIRWISE:
        raise InputError(None, None, "pairwise", f"{pairwise!r}: use one of {', '.join(PAIRWISE)}")
    if ruling not in RULING:
        raise InputError(None, None, "ruling", f"{ruling!r}: use one of {', '.join(RULING)}")
    if copy not in COPY:
        raise InputError(None, None, "copy", f"{copy!r}: use one of {', '.join(COPY)}")
    if copy != "free" and runner != "hf_local":
        raise InputError(None, None, "copy", f"{copy!r} decodes in PyTorch only: use --runner hf_local")
    if ask not in ASK:
        raise InputError(None, None, "ask", f"{ask!r}: use one of {', '.join(ASK)}")
    if ask == "groups" and ruling != "lines":
        raise InputError(None, None, "ask", "a case asked per group is ruled by its lines: use ruling lines")
    grouped = ask == "groups"
    gates_cfg = load_gates(gates_path or DEFAULT_GATES, METRICS)
    header, singles, pairs = read_set(data, limit)
    # rulings: each candidate once (both orders of a pair hold the same two), in the order first met
    candidates = [pair_candidates(r) for r in pairs] if pairwise == "rulings" else []
    ruled = {p: i for i, p in enumerate(dict.fromkeys(p for two in candidates for p in two))}
    padded_cases = [padded_case(r) for r in singles]  # a bad record fails here, before the model loads
    asked = group_questions(singles, pairs if pairwise == "rulings" else []) if grouped else {}
    forms_path = forms or data.parent / FORMS
    line_forms = LineForms.from_training(forms_path) if copy == "lines" else None
    same_status = [same for _, same in padded_cases]
    flip_cases = sum(same_status)
    gen = judge_generator(runner, model, max_new_tokens, batch_size, dtype)
    gen.stop = LoopGuard(gen.stop, gen.chat.tok)
    if copy == "case":
        gen.constrain = partial(copy_picker, gen.chat.tok)
    elif line_forms is not None:
        gen.constrain = partial(line_picker, gen.chat.tok, line_forms)
    forms_sha = sha256_file(forms_path) if line_forms is not None else None
    key = run_key(
        gen.fingerprint,
        data,
        limit,
        batch_size,
        dtype,
        max_new_tokens,
        runner,
        pairwise,
        ruling,
        copy,
        forms_sha,
        ask,
    )
    book = Journal(journal, key) if journal is not None else None
    total = 3 * len(singles) + (len(ruled) if pairwise == "rulings" else len(pairs))
    # each output again: ruled where it is not a valid verdict (or winner), or by its lines
    if ruling != "free":
        total += 2 * len(singles) + (len(ruled) if pairwise == "rulings" else len(pairs))
    bar = tqdm(total=total, disable=not progress, unit="case", desc=f"judge {runner}")
    decoded = {"singles": 0, "seconds": 0.0}  # what this process decoded itself, for the time a case takes

    def chunked(part: str, items: list[Any], work: Callable[[list[Any]], list[Any]]) -> list[Any]:
        out: list[Any] = []
        step = 8 * batch_size  # the generator sorts each chunk by length into batches
        for i in range(0, len(items), step):
            chunk = items[i : i + step]
            got = book.get(part, i) if book is not None else None
            if got is None or len(got) != len(chunk):
                t0 = time.perf_counter()
                got = work(chunk)
                if part == "singles":
                    decoded["singles"] += len(chunk)
                    decoded["seconds"] += time.perf_counter() - t0
                if book is not None:
                    book.add(part, i, got)
            out += got
            bar.update(len(chunk))
        return out

    def decode(max_new: int, per_group: bool = False) -> Callable[[list[str]], list[str]]:
        def texts(prompts: list[str]) -> list[str]:
            return [g.text for g in gen.generate([[{"role": "user", "content": p}] for p in prompts])]

        def work(prompts: list[str]) -> list[str]:
            gen.max_new_tokens = max_new
            if not per_group:
                return texts(prompts)
            said = texts([q for p in prompts for q in asked[p]])
            n = len(GROUPS)
            return [json.dumps(said[i * n : (i + 1) * n], ensure_ascii=False) for i in range(len(prompts))]

        return work

    def constrained(
        part: str, prompts: list[str], raw: list[str], scored: Callable | None = None
    ) -> list[str]:
        """The outputs as scored (`scored_verdict`, `ruled_by_lines`, `scored_winner`): the raw ones under
        `--ruling free`."""
        if ruling == "free":
            return raw
        if scored is None:
            scored = ruled_by_groups if grouped else ruled_by_lines if ruling == "lines" else scored_verdict
        return chunked(
            f"{part}-ruled",
            list(zip(prompts, raw, strict=True)),
            lambda chunk: [scored(gen, p, o) for p, o in chunk],
        )

    if book is not None and book.done:
        bar.write(f"resuming from {journal}: {sum(map(len, book.done.values()))} of {total} outputs kept")
    single_prompts = [r["prompt"] for r in singles]
    single_raw = chunked("singles", single_prompts, decode(max_new_tokens, grouped))
    rulings: list[list[str]] = []
    raw_rulings: list[list[str]] = []
    pair_raw: list[str] = []  # a direct pair's free output (rulings: the pair's ruling is computed)
    if pairwise == "rulings":
        said_raw = chunked("rulings", list(ruled), decode(max_new_tokens, grouped))
        said = constrained("rulings", list(ruled), said_raw)
        rulings = [[said[ruled[p]] for p in two] for two in candidates]
        raw_rulings = [[said_raw[ruled[p]] for p in two] for two in candidates]
        pair_out = [ruled_pair(a, b) for a, b in rulings]
    else:
        pair_prompts = [r["prompt"] for r in pairs]
        pair_raw = chunked("pairs", pair_prompts, decode(min(max_new_tokens, PAIR_TOKENS)))
        pair_out = constrained("pairs", pair_prompts, pair_raw, scored_winner)
    padded_prompts = [prompt for prompt, _ in padded_cases]
    padded_raw = chunked("padded", padded_prompts, decode(max_new_tokens, grouped))
    single_out = constrained("singles", single_prompts, single_raw)
    padded_out = constrained("padded", padded_prompts, padded_raw)
    if grouped:
        probs = chunked(
            "probabilities",
            list(zip(single_prompts, single_raw, single_out, strict=True)),
            lambda chunk: [group_probabilities(gen, asked[p], raw, o) for p, raw, o in chunk],
        )
    else:
        probs = chunked(
            "probabilities",
            list(zip(single_prompts, single_out, strict=True)),
            lambda chunk: status_probabilities(gen, [p for p, _ in chunk], [o for _, o in chunk]),
        )
    bar.close()
    singles_score = score_singles([r["label"] for r in singles], single_out, probs, single_raw)
    if grouped:  # raw validity: every answer the checks list it was asked for
        singles_score["raw_valid_rate"] = sum(group_worksheet(o)[1] for o in single_raw) / max(
            1, len(singles)
        )
    pairs_score = score_pairs(pairs, pair_out, pair_raw or None)
    summary = {k: singles_score[k] for k in singles_score if k in METRICS}
    summary.update(
        pairwise_accuracy=pairs_score["pairwise_accuracy"],
        swap_consistency=pairs_score["swap_consistency"],
        flip_rate=flip_rate(single_out, padded_out, same_status),
    )
    counts = {
        k: len(pairs) // 2 if k in ("pairwise_accuracy", "swap_consistency") else len(singles)
        for k in METRICS
    }
    counts["flip_rate"] = flip_cases
    free_sheets = [
        (group_worksheet(o)[0] or None) if grouped else worksheet(o, looping(o)) for o in single_raw
    ]
    sheets = [worksheet(o) for o in single_out]
    follows = [  # status and violated clauses as the worksheet's fates imply them
        (v := read_verdict(o).value) is not None
        and implied_ruling(sheet)[:2]
        == (v["status"], tuple(c for c in CLAUSES if c in v["violated_clauses"]))
        for o, sheet in zip(single_out, sheets)
        if sheet is not None
    ]
    gates = evaluate_gates(summary, counts, gates_cfg)
    report = {
        "header": {
            "report": "caws-eval",
            "created_at": created_at(),
            "code_version": key["code_version"],
            "model": str(model),
            "model_fingerprint": gen.fingerprint,
            "dataset": str(data),
            "dataset_sha256": key["dataset_sha256"],
            "dataset_header": header,
            "gates_sha256": sha256_file(gates_path or DEFAULT_GATES),
            "runner": runner,
            "pairwise": pairwise,
            "ruling": ruling,
            "copy": copy,
            "ask": ask,
            **(
                {"line_forms": {"path": str(forms_path), "sha256": forms_sha, "forms": len(line_forms.forms)}}
                if line_forms is not None
                else {}
            ),
            "decoding": gen.decoding() if runner == "coreml" else {"dtype": gen.dtype},
            "single_cases": len(singles),
            "pair_records": len(pairs),
            "max_new_tokens": max_new_tokens,
            "flip_cases": flip_cases,  # the padded case's right status is the case's
            "loops_cut": sum(  # outputs LoopGuard stopped (--ask groups: answers)
                map(looping, [a for o in single_raw + padded_raw for a in answers_of(o)])
                if grouped
                else map(looping, single_raw + padded_raw)
            ),
            # outputs that were no valid verdict (or winner), ruled again under the grammar (--ruling lines:
            # also each one whose ruling its own check lines contradict)
            "ruled_under_grammar": {
                "singles": sum(o != r for o, r in zip(single_out, single_raw)),
                "padded": sum(o != r for o, r in zip(padded_out, padded_raw)),
                "candidates": sum(o != r for x, y in zip(rulings, raw_rulings) for o, r in zip(x, y)),
                "pairs": sum(o != r for o, r in zip(pair_out, pair_raw)),
            },
        },
        "summary": summary,
        "singles": singles_score,
        "pairs": pairs_score,
        # the free check lines against the oracle's, and whether each verdict's ruling is the one its own
        # check lines' fates imply (diagnostics, not gated; an audit Judge's outputs only)
        "worksheets": {
            **score_worksheets(
                free_sheets, [audit_target(r)[1] if s else [] for r, s in zip(singles, free_sheets)]
            ),
            "ruling_follows_checks": sum(follows) / len(follows) if follows else None,
        },
        # greedy decoding of the cases this process decoded (none: all were read back from the journal)
        "seconds_per_single_case": decoded["seconds"] / decoded["singles"] if decoded["singles"] else None,
        "gates": gates,
        "passed": run_passed(gates),
    }
    results = [
        {
            "id": r["id"],
            "label": r["label"],
            "output": o,  # what is scored: the raw output, or the case ruled under the grammar
            **({"raw_output": ro} if ro != o else {}),
            "read": "constrained" if ro != o else read_verdict(o).how,
            "looping": looping(ro),
            "padded_output": po,
            **({"padded_raw_output": pro} if pro != po else {}),
            "status_probabilities": p,
        }
        for r, o, ro, po, pro, p in zip(singles, single_out, single_raw, padded_out, padded_raw, probs)
    ]
    results += [
        {
            "id": r["id"],
            "label": r["label"],
            "output": o,
            **({"raw_output": pair_raw[i]} if pair_raw and pair_raw[i] != o else {}),
            "read": "constrained" if pair_raw and pair_raw[i] != o else read_winner(o).how,
            **({"rulings": rulings[i]} if rulings else {}),
            **({"raw_rulings": raw_rulings[i]} if rulings and raw_rulings[i] != rulings[i] else {}),
        }
        for i, (r, o) in enumerate(zip(pairs, pair_out))
    ]
    gen.close()
    return report, results
