"""Training examples: a conversation's token ids, loss masks, process-step weights and (when the KD
mix has them) the teacher's top-k logprobs at the response positions.

Two sources, joined by item id when both are given:
- a contextual dataset: the response is the gold `teacher_text` (ground truth, loss `ce_ground_truth`);
- a KD mix: the response is the teacher's text (loss `ce_teacher`), with sparse logprobs if stored.
  A teacher-forced record (`kd-mix --score-gold`) holds the gold text itself, scored by the teacher: it
  is built as the same conversation, its top-k rows go back to the assistant-turn positions they were
  scored at, and its source is `teacher`, so `ce_teacher` is the cross-entropy on the gold text and
  `kl_forward` pulls towards the teacher's distribution there. Give those items through `--kd` only:
  through `--data` as well, their gold text would count twice.

A response is a conversation, split as the tool loop (eval/runners/tool_loop.py) exchanges it: an
assistant turn runs up to and with a `</tool_call>` that a `<tool_response>` follows; that block is a
`tool` message; the rest is the final assistant turn. The sequence is built the way the loop feeds the
model: before each assistant turn, the chat template's prompt ids of the conversation so far (exactly
`chat_prompt_ids`, what every local runner decodes from), then the turn's own ids; the last turn ends
with the end-of-sequence token the loop stops on (a call turn stops on its `</tool_call>`). Loss falls on
the assistant turns only (prompt, template text and tool responses weigh 0), with the process weights on
their tool names, JSON arguments and integration spans.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from kimi_student.chat.prompt import item_messages
from kimi_student.chat.template import chat_prompt_ids
from kimi_student.chat.transcript import RESP_CLOSE, RESP_OPEN, parse_transcript
from kimi_student.data.kd_mix import read_logprobs
from kimi_student.errors import InputError, KimiStudentError
from kimi_student.fingerprint import sha256_json
from kimi_student.jsonl import read_jsonl
from kimi_student.tokenizer import token_range
from kimi_student.train.losses import process_weights


@dataclass
class Example:
    id: str
    source: str  # "gold" | "teacher"
    input_ids: np.ndarray  # (L,) int64: prompt + response
    response_start: int  # first token of the first assistant turn
    weights: np.ndarray  # (L,) float32: process weights on assistant turns, 0 elsewhere
    topk_ids: np.ndarray | None = None  # (L, K) int32, rows of response positions filled, else -1
    topk_logprobs: np.ndarray | None = None  # (L, K) float32
    logprob_temperature: float = 1.0
    segments: list[list[int]] = field(default_factory=list)  # [start, end) of each assistant turn
    # where each process step lies: kind -> [start, end) token ranges in the sequence (process_spans, moved
    # to the turn's position), and each tool call's name with the tokens from its name to its arguments' end
    spans: dict[str, list[list[int]]] = field(default_factory=dict)
    calls: list[tuple[str, int, int]] = field(default_factory=list)

    def place_logprobs(self, lp: dict[str, np.ndarray], rows: slice | np.ndarray, temperature: float) -> None:
        """The KD mix's top-k rows at `rows` of the sequence; every other row is empty (id -1)."""
        k = lp["topk_ids"].shape[1]
        self.topk_ids = np.full((len(self.input_ids), k), -1, dtype=np.int32)
        self.topk_logprobs = np.zeros((len(self.input_ids), k), dtype=np.float32)
        self.topk_ids[rows] = lp["topk_ids"]
        self.topk_logprobs[rows] = lp["topk_logprobs"].astype(np.float32)
        self.logprob_temperature = temperature


# A Judge's decisions: the few tokens that decide, outweighed by the rationale around them unless weighted
# themselves (process kind `verdict`). A Judge target is a JSON object; the verdict form opens with its status
# or a pair's winner, the reasoned form with the budget or a pair's two statuses, the audit form with its
# checks. Its decisions are the values of these keys (a quote inside a string is escaped, so a rationale or a
# finding's detail never matches) and, in the audit form, each check's outcome: what follows the check
# line's last ": " (`ok`, `valid`, a broken rule and its fate), where the copied facts before it end and the
# comparison's result begins (a 135M audit Judge copied the figures right and wrote `ok` after them: stop 42);
# and the decisions a line takes before its outcome: the first word after its first ": " (a path `in`,
# `under` scope out or `not` in scope in; a waiver's state), an expiry `after` or `not after` the check time,
# and the mark after a budget's maximum (`,` where a waiver raises it, `:` where none does). Read
# teacher-forced, a 135M audit Judge missed those first (`judge lines`, stop 43).
_VERDICT = re.compile(r'\A\{"(?:status|winner|budget|a|checks)": ')
_DECISION = re.compile(
    r'"(?:status|clause|disposition|a|b|winner)": "([A-Za-z_]+)"|"violated_clauses": (\[[^\]]*\])'
)
_CHECK_DECISIONS = (
    re.compile(r': ([^":\\]+)"(?=, "|\])'),  # the rest of a check item after its last ": "
    re.compile(r'(?:(?<=\[")|(?<=", "))[^":\\]*?: ([^ ;:,"\\]+)'),  # the first word after its first ": "
    re.compile(r" (after|not after) now "),
    re.compile(r"max \d+([,:])"),
)
_CHECK_ITEM = re.compile(r'"((?:[^"\\]|\\.)*)"')  # one check line, a JSON string


def process_spans(text: str, offsets: list[tuple[int, int]]) -> dict[str, list[list[int]]]:
    """Token ranges of tool names, JSON arguments and integration spans in a response, and of a Judge's
    decision when the response is a verdict or a pair ruling (verdict); of an audit's check lines, the
    decisions of those that break a rule (broken: `... -> CLAUSE blocking`) are also a kind of their own."""
    t = parse_transcript(text)
    decided = (
        [m.span(g) for m in _DECISION.finditer(text) for g in (1, 2) if m.start(g) >= 0]
        if _VERDICT.match(text)
        else []
    )
    broken: list[tuple[int, int]] = []
    if text.startswith('{"checks": ['):
        end = text.find('"]') + 2  # the checks' closing quote and bracket; none: 1, nothing to find
        checks = [m.span(1) for rule in _CHECK_DECISIONS for m in rule.finditer(text, 0, end)]
        lines = [m.span(1) for m in _CHECK_ITEM.finditer(text, len('{"checks": ['), end) if " -> " in m[1]]
        broken = [(s, e) for s, e in checks if any(a <= s and e <= b for a, b in lines)]
        decided += checks
    return {
        "tool_name": [list(token_range(offsets, *c.name_span)) for c in t.calls if c.name_span],
        "json_args": [list(token_range(offsets, *c.args_span)) for c in t.calls if c.args_span],
        "integration": [list(token_range(offsets, s, e)) for s, e in t.spans],
        "verdict": [list(token_range(offsets, s, e)) for s, e in decided],
        "broken": [list(token_range(offsets, s, e)) for s, e in broken],
    }


def conversation_turns(text: str) -> list[dict[str, str]]:
    """The messages the tool loop adds for a transcript: assistant turns and tool responses.

    The loop joins its turns with one newline, so a call followed by a newline and a `<tool_response>`
    block ends an assistant turn and that block is the tool's message. A call with no response after it (a toy
    transcript, or text after the call) does not end the turn. The last message is always the assistant's
    final turn (empty when the transcript ends with a tool response)."""
    turns: list[dict[str, str]] = []
    pos = 0
    for call in parse_transcript(text).calls:
        if not text.startswith("\n" + RESP_OPEN, call.end):
            continue
        close = text.find(RESP_CLOSE, call.end)
        if close < 0:
            break
        end = close + len(RESP_CLOSE)
        turns.append({"role": "assistant", "content": text[pos : call.end]})
        turns.append({"role": "tool", "content": text[call.end + 1 : end]})
        pos = end + 1 if text.startswith("\n", end) else end
    turns.append({"role": "assistant", "content": text[pos:]})
    return turns


class ExampleBuilder:
    """Tokenises with the student's HF tokenizer (chat template for the prompt)."""

    def __init__(self, tokenizer: Any, process_weights: dict[str, float]):
        self.tok = tokenizer
        self.process_weights = process_weights  # span kind -> loss weight of its tokens
        self.eos = tokenizer.eos_token_id

    @cached_property
    def tokenizer_sha256(self) -> str:
        """What decides the ids of a conversation: the vocabulary, the chat template and the end token.
        Logit KD needs the teacher's and the student's to be the same."""
        return sha256_json(
            {"vocab": self.tok.get_vocab(), "chat_template": self.tok.chat_template, "eos": self.eos}
        )

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return chat_prompt_ids(self.tok, messages)

    def build(
        self,
        id_: str,
        source: str,
        messages: list[dict[str, str]],
        response: str,
        response_ids: list[int] | None = None,
    ) -> Example:
        """`response_ids`: the teacher's own tokens (KD with logprobs), kept as one assistant turn so the
        logprob rows stay aligned; otherwise the response is split into the loop's conversation."""
        if response_ids is None:
            return self.conversation(id_, source, messages, conversation_turns(response))
        p_ids = self.prompt_ids(messages)
        ids = np.asarray(p_ids + list(response_ids) + [self.eos], dtype=np.int64)
        w = process_weights(len(ids), {}, self.process_weights).numpy()
        w[: len(p_ids)] = 0.0  # no loss on the prompt
        return Example(id_, source, ids, len(p_ids), w.astype(np.float32))

    def conversation(
        self, id_: str, source: str, messages: list[dict[str, str]], turns: list[dict[str, str]]
    ) -> Example:
        """The token sequence the tool loop shows the model, with loss on the assistant turns only."""
        conv = list(messages)
        ids: list[int] = []
        spans: dict[str, list[list[int]]] = {}
        calls: list[tuple[str, int, int]] = []
        segments: list[list[int]] = []  # [start, end) of each assistant turn's tokens
        for m in turns:
            if m["role"] == "assistant":
                prompt = self.prompt_ids(conv)
                if prompt[: len(ids)] != ids:
                    raise KimiStudentError(
                        f"item {id_}: the chat template re-tokenises an earlier turn differently once "
                        "the conversation goes on, so training cannot match the tool loop's sequence"
                    )
                ids = prompt
                enc = self.tok(m["content"], add_special_tokens=False, return_offsets_mapping=True)
                start = len(ids)
                for kind, ranges in process_spans(m["content"], enc["offset_mapping"]).items():
                    spans.setdefault(kind, []).extend([start + a, start + b] for a, b in ranges)
                for c in parse_transcript(m["content"]).calls:
                    if c.name_span:
                        a, b = token_range(
                            enc["offset_mapping"], c.name_span[0], (c.args_span or c.name_span)[1]
                        )
                        calls.append((c.name, start + a, start + b))
                ids.extend(enc["input_ids"])
                segments.append([start, len(ids)])
            conv.append(m)
        ids.append(self.eos)  # the final turn ends with the token the loop stops on
        segments[-1][1] = len(ids)
        # Each turn's first token decides between calling a tool and answering: one token a turn that
        # sets the whole call sequence, outweighed by the many tokens around it unless weighted itself.
        spans["turn_start"] = [[a, a + 1] for a, b in segments if b > a]
        w = process_weights(len(ids), spans, self.process_weights).numpy()
        on_turn = np.zeros(len(ids), dtype=bool)
        for a, b in segments:
            on_turn[a:b] = True
        w[~on_turn] = 0.0  # prompt, template text and tool responses are context, not targets
        return Example(
            id_,
            source,
            np.asarray(ids, dtype=np.int64),
            segments[0][0],
            w.astype(np.float32),
            segments=segments,
            spans=spans,
            calls=calls,
        )


def teacher_forced_example(
    builder: ExampleBuilder, kd: Path, line: int, row: dict[str, Any], wrapper: str
) -> Example:
    """A `kd-mix --score-gold` record as the conversation the student trains on, each stored top-k row at
    the position it was scored at (logprobs at position j describe token j: the trainer shifts). Scored
    with another tokenizer or prompt wrapper, or a sequence that came out otherwise: refused."""
    rid = row.get("id")
    if row.get("tokenizer_sha256") != builder.tokenizer_sha256:
        raise InputError(
            kd, line, "tokenizer_sha256", f"record {rid}: scored with another tokenizer than the student's"
        )
    if row.get("wrapper") != wrapper:
        raise InputError(
            kd,
            line,
            "wrapper",
            f"record {rid}: scored with the {row.get('wrapper')!r} prompt wrapper, the train config's "
            f"system_prompt gives {wrapper!r} (kd-mix --wrapper)",
        )
    if not isinstance(row.get("logprobs"), dict):
        raise InputError(kd, line, "logprobs", f"record {rid}: a teacher-forced record needs its logprobs")
    ex = builder.conversation(row["id"], "teacher", row["messages"], conversation_turns(row["text"]))
    lp = read_logprobs(kd, row)
    at = np.concatenate([np.arange(a, b) for a, b in ex.segments])
    if ex.segments != row.get("segments") or not np.array_equal(ex.input_ids[at], lp["token_ids"]):
        raise InputError(
            kd, line, "segments", f"record {rid}: the student's sequence is not the one the teacher scored"
        )
    ex.place_logprobs(lp, at, float(row["logprobs"].get("temperature") or 1.0))
    return ex


def load_examples(
    builder: ExampleBuilder,
    data: str | Path | None,
    kd: str | Path | None,
    limit: int | None = None,
    system: bool = True,
) -> list[Example]:
    """Gold prompts go through the eval's prompt wrapper: `system` (the tool list, 1.3k tokens, then the
    full prompt) or, without it, `request` (the request alone; toy and worker-e2e runs)."""
    examples: list[Example] = []
    wrapper = "system" if system else "request"
    if data:
        for line, row in read_jsonl(data):
            if limit and not kd and len(examples) == limit:
                break  # the rest would be built only to be dropped
            if row.get("__header__"):
                continue
            if not isinstance(row.get("teacher_text"), str) or not isinstance(row.get("prompt"), str):
                raise InputError(
                    data, line, "teacher_text", "a contextual item needs prompt and teacher_text"
                )
            msgs = item_messages(row, wrapper)
            examples.append(builder.build(row["id"], "gold", msgs, row["teacher_text"]))
    if kd:
        kd = Path(kd)
        for line, row in read_jsonl(kd):
            if row.get("__header__") or row.get("status") != "ok":
                continue
            if not isinstance(row.get("text"), str) or not isinstance(row.get("messages"), list):
                raise InputError(kd, line, "text", "a KD record needs text and messages")
            if row.get("kind") == "teacher_forced":
                examples.append(teacher_forced_example(builder, kd, line, row, wrapper))
                continue
            lp = read_logprobs(kd, row) if row.get("logprobs") else None
            use_ids = lp is not None and bool(np.all(lp["token_ids"] >= 0))
            ex = builder.build(
                row["id"],
                "teacher",
                row["messages"],
                row["text"],
                lp["token_ids"].tolist() if use_ids else None,
            )
            if use_ids and lp is not None:
                # Logprobs at response position j describe token j: they are the target distribution of
                # the logit one position earlier, which the trainer handles with the usual shift.
                s = ex.response_start
                rows = slice(s, s + len(lp["topk_ids"]))
                ex.place_logprobs(lp, rows, float(row["logprobs"].get("temperature") or 1.0))
            examples.append(ex)
    if limit:
        examples = examples[:limit]
    if not examples:
        raise InputError(data or kd, None, None, "no training examples")
    return examples


class ExampleStream:
    """Example indices, epoch after epoch, each epoch a seeded permutation. Its state is two integers,
    saved in every checkpoint, so a resumed run sees exactly the examples the uninterrupted one would.

    With `lengths` and `seq_len` (packing that never cuts an example), each epoch's permutation is put in
    row order by `fill_order`: short examples later in the epoch fill the room a long one leaves, so rows
    carry examples where they would carry padding (a Judge's mix of 1,200-token cases and 200-token drills
    wasted ~19% of every row)."""

    def __init__(
        self,
        n: int,
        seed: int,
        epoch: int = 0,
        pos: int = 0,
        lengths: Sequence[int] | None = None,
        seq_len: int = 0,
    ):
        self.n, self.seed, self.epoch, self.pos = n, seed, epoch, pos
        self.lengths = np.asarray(lengths, dtype=np.int64) if lengths is not None else None
        self.seq_len = seq_len
        self._perm = self._permutation()

    def _permutation(self) -> np.ndarray:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        if self.lengths is None or self.seq_len <= 0:
            return perm
        return fill_order(perm, self.lengths, self.seq_len)

    def peek(self) -> int:
        """The index `next` returns, without taking it."""
        if self.pos >= self.n:
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation()
        return int(self._perm[self.pos])

    def next(self) -> int:
        idx = self.peek()
        self.pos += 1
        return idx

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}


def fill_order(perm: np.ndarray, lengths: np.ndarray, seq_len: int, window: int = 64) -> np.ndarray:
    """`perm` reordered so that `pack(truncate=False)` reading it in turn fills its rows: each row starts with
    the first example not yet placed, then takes, while any fits, the first of the next `window` unplaced
    examples that fits the room left. Every example once, the row starts in `perm`'s order; pure."""
    placed = np.zeros(len(perm), dtype=bool)
    out: list[int] = []
    head = 0  # every position before it is placed
    while head < len(perm):
        out.append(int(perm[head]))
        placed[head] = True
        room = seq_len - int(lengths[perm[head]])
        while head < len(perm) and placed[head]:
            head += 1
        while room > 0 and head < len(perm):
            stop = min(len(perm), head + window)
            free = head + np.flatnonzero(~placed[head:stop])
            fits = free[lengths[perm[free]] <= room]
            if not len(fits):
                break
            j = int(fits[0])
            out.append(int(perm[j]))
            placed[j] = True
            room -= int(lengths[perm[j]])
            while head < len(perm) and placed[head]:
                head += 1
    return np.asarray(out, dtype=perm.dtype)


def pack(
    examples: list[Example], stream: ExampleStream, seq_len: int, batch_size: int, truncate: bool = True
) -> dict[str, np.ndarray]:
    """Greedily pack examples from `stream` into `batch_size` rows of `seq_len` tokens.

    Position ids restart at every example, so each keeps its own positions; an example longer than
    the room left in a row loses the start of its prompt, then the end of its response. With
    `truncate=False` an example that fits a whole row but not the room left starts the next row instead
    (the rest of the row is padding without loss), so short examples are never cut; it stays in the stream
    (`peek`) and starts the next batch's first row when it is the last row's (before stop 48 it was skipped:
    a long case more often than a short drill).
    """
    k = max((e.topk_ids.shape[1] for e in examples if e.topk_ids is not None), default=1)
    ids = np.zeros((batch_size, seq_len), dtype=np.int64)
    pos = np.zeros((batch_size, seq_len), dtype=np.int64)
    w = np.zeros((batch_size, seq_len), dtype=np.float32)
    src = np.zeros((batch_size, seq_len), dtype=np.int8)  # 1 gold, 2 teacher
    tk_ids = np.full((batch_size, seq_len, k), -1, dtype=np.int32)
    tk_lp = np.zeros((batch_size, seq_len, k), dtype=np.float32)
    for row in range(batch_size):
        filled = 0
        while filled < seq_len:
            e = examples[stream.peek()]
            room = seq_len - filled
            if not truncate and filled and len(e.input_ids) > room:  # whole in the next row (or batch)
                pos[row, filled:] = np.arange(room)  # padding: its own "sequence", weight 0
                break
            stream.next()
            n = min(len(e.input_ids), room)
            # Too long for the room: drop the start of the prompt first, then the end of the response.
            a = min(len(e.input_ids) - n, e.response_start)
            cut = slice(a, a + n)
            sl = slice(filled, filled + n)
            ids[row, sl] = e.input_ids[cut]
            pos[row, sl] = np.arange(n)
            w[row, sl] = e.weights[cut]
            src[row, sl] = 1 if e.source == "gold" else 2
            if e.topk_ids is not None:
                tk_ids[row, sl, : e.topk_ids.shape[1]] = e.topk_ids[cut]
                tk_lp[row, sl, : e.topk_ids.shape[1]] = e.topk_logprobs[cut]
            filled += n
    return {
        "input_ids": ids,
        "position_ids": pos,
        "weights": w,
        "source": src,
        "topk_ids": tk_ids,
        "topk_logprobs": tk_lp,
    }
