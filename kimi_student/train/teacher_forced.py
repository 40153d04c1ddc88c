"""Teacher-forced KD requests (`kd-mix --score-gold`): a contextual item's gold conversation as the exact
token sequence the student trains on, for the teacher to score in one forward instead of answering.

A Worker example is a tool loop (request, call turn, tool response, ..., final answer) with loss on the
assistant turns only; a generated reply cannot be aligned with it, but the teacher's distribution at each
of those positions, given the same context, can. The sequence comes from `ExampleBuilder.conversation`
(the trainer's own code path) with the teacher's tokenizer and the trainer's prompt wrapper, so
`load_examples` rebuilds it with the student's tokenizer and finds the same ids at the same positions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kimi_student.chat.prompt import item_messages
from kimi_student.errors import InputError
from kimi_student.jsonl import read_jsonl
from kimi_student.teachers.base import Decoding, ForcedSequence, TeacherRequest
from kimi_student.train.examples import ExampleBuilder, conversation_turns


def forced_requests(
    path: str | Path,
    tokenizer: Any,
    wrapper: str,
    top_k: int,
    precision: str,
    limit: int | None = None,
) -> list[TeacherRequest]:
    """One scoring request per item of a contextual dataset (the first `limit`), in file order. The kept
    positions are the assistant turns' (no process weights here: they only scale the loss)."""
    builder = ExampleBuilder(tokenizer, {})
    decoding = Decoding(max_new_tokens=0, temperature=1.0, top_logprobs=top_k)
    out: list[TeacherRequest] = []
    seen: set[str] = set()
    for line, row in read_jsonl(path):
        if row.get("__header__"):
            continue
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(row.get("id"), str) or row["id"] in seen:
            raise InputError(path, line, "id", "missing, not a string or repeated")
        seen.add(row["id"])
        for name in ("prompt", "teacher_text"):
            if not isinstance(row.get(name), str):
                raise InputError(
                    path, line, name, "--score-gold needs contextual items (prompt, teacher_text)"
                )
        msgs = item_messages(row, wrapper)
        ex = builder.conversation(row["id"], "gold", msgs, conversation_turns(row["teacher_text"]))
        forced = ForcedSequence(
            text=row["teacher_text"],
            token_ids=tuple(int(i) for i in ex.input_ids),
            segments=tuple((a, b) for a, b in ex.segments),
            wrapper=wrapper,
            tokenizer_sha256=builder.tokenizer_sha256,
            precision=precision,
        )
        out.append(TeacherRequest(row["id"], tuple(msgs), decoding, forced))
    return out


def score_gold(
    teacher: str,
    prompts: str | Path,
    out: str | Path,
    *,
    wrapper: str,
    top_k: int,
    precision: str,
    limit: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """`kd-mix --score-gold`: the in-process `teacher` scores the gold conversations of `prompts` into the
    KD mix `out` (cached, resumable). Returns the mix's header with `sequence_tokens` and `seconds` added;
    `precision` is auto, bf16 or no (resolved here, and said through `log` before the model loads)."""
    from kimi_student.backends.hf import hf_source, load_hf_tokenizer
    from kimi_student.data.kd_mix import build_kd_mix, prompt_set_sha256
    from kimi_student.teachers import make_teacher
    from kimi_student.teachers.hf_local import scoring_precision

    precision = scoring_precision(precision)
    reqs = forced_requests(prompts, load_hf_tokenizer(hf_source(teacher)), wrapper, top_k, precision, limit)
    name = "fp32" if precision == "no" else precision
    log(f"scoring {len(reqs)} gold conversations ({wrapper} wrapper) in {name}")
    t = make_teacher(teacher, top_k=top_k)
    t0 = time.perf_counter()
    header = build_kd_mix(t, reqs, out, prompt_set_sha256(reqs), progress)
    tokens = sum(len(r.forced.token_ids) for r in reqs if r.forced)
    return {**header, "sequence_tokens": tokens, "seconds": time.perf_counter() - t0, "precision": precision}
