"""The Drafter's training data: what the Worker itself writes, with the hidden states it writes it from.

Prompts are the tool loop's (the request, answered with a call or, for a control, text; the request + call +
tool response, answered with the integration sentences) on `contextual gen` items of the train split (the
heldout split for a set to measure on). The
Worker answers each greedily (batched, fp32), then one forward over prompt + answer gives its final hidden
states (what its head reads) at every position: a feature drafter learns to predict them, and the answer's
tokens are the very ones speculative decoding will check drafts against (on-policy for the target).

The folder holds header.json (target, seed, items, max_new) and shards of `SHARD` prompts,
shard-NNNNN.safetensors: `tokens` (int32, every sequence end to end), `lengths` and `prompt_lengths` (int64,
one a sequence), `states` (fp16, one row a token). A shard is written whole (temp file, then rename), so a
killed run resumes at the first missing shard with the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from kimi_student.errors import KimiStudentError

SHARD = 64
Messages = list[dict[str, Any]]


def loop_prompts(items: list[dict[str, Any]]) -> list[Messages]:
    """The tool loop's prompts of each item: its request, and (when its answer calls a tool and goes on)
    the request + call + tool response."""
    return [m for m, _, _ in loop_turns(items)]


def loop_turns(items: list[dict[str, Any]]) -> list[tuple[Messages, str, bool]]:
    """Each tool-loop prompt with the item's own answer to it (the data's, not a model's) and whether that
    answer is the conversation's last turn (which ends with the end-of-sequence token)."""
    from kimi_student.chat.prompt import item_messages
    from kimi_student.train.examples import conversation_turns

    out = []
    for it in items:
        start = item_messages(it, "request")
        turns = conversation_turns(it["teacher_text"])
        out.append((start, turns[0]["content"], len(turns) == 1))
        if len(turns) >= 3:
            out.append((start + turns[:2], turns[2]["content"], len(turns) == 3))
    return out


def data_answer(tok: Any, text: str, last: bool, eos: int, max_new: int) -> list[int]:
    """The ids training gives an answer (its text, then the end token if it ends the conversation),
    cut at `max_new` as a decoded answer would be."""
    ids = list(tok(text, add_special_tokens=False)["input_ids"]) + ([eos] if last else [])
    return ids[:max_new]


def shards(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("shard-*.safetensors"))


def read_sequences(folders: list[Path]) -> Iterator[tuple[list[int], int, torch.Tensor]]:
    """(tokens, prompt length, states (T, d) fp16) of every sequence in the folders, in order."""
    from safetensors.torch import load_file

    for folder in folders:
        found = shards(folder)
        if not found:
            raise KimiStudentError(
                f"{folder}: no drafter data shards (make it with `kimi-student drafter data`)"
            )
        for path in found:
            t = load_file(str(path))
            start = 0
            for n, p in zip(t["lengths"].tolist(), t["prompt_lengths"].tolist(), strict=True):
                yield t["tokens"][start : start + n].tolist(), p, t["states"][start : start + n]
                start += n


ANSWERS = ("worker", "data")


def header_of(
    target: Path, target_sha256: str, n: int, seed: int, max_new: int, split: str, answers: str = "worker"
) -> dict[str, Any]:
    return {
        "kind": "drafter_data",
        **({"answers": answers} if answers != "worker" else {}),  # a worker folder's header as it was
        "target": str(target),
        "target_sha256": target_sha256,
        "items": n,
        "seed": seed,
        "split": split,
        "max_new_tokens": max_new,
        "shard_prompts": SHARD,
    }


def write_data(
    out: Path,
    target: Path,
    n: int,
    seed: int,
    max_new: int,
    batch: int = 16,
    split: str = "train",
    progress: bool = False,
    answers: str = "worker",
) -> dict[str, Any]:
    """Write (or finish) the folder; returns its header plus the counts. `answers` "data": each prompt's
    answer is the item's own (the data-only baseline's sequences, with the Worker's states over them)
    instead of the Worker's greedy one."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    from kimi_student.chat.template import ChatTokenizer
    from kimi_student.data.contextual import generate
    from kimi_student.eval.runners.greedy_hf import greedy_decode
    from kimi_student.eval.runners.hf_local import HFGenerator
    from kimi_student.fingerprint import weights_sha256
    from kimi_student.outputs import temp_path

    out = Path(out)
    if answers not in ANSWERS:
        raise KimiStudentError(f"answers {answers!r}: choose one of {', '.join(ANSWERS)}")
    head = header_of(target, weights_sha256(target), n, seed, max_new, split, answers)
    if (out / "header.json").exists():
        old = json.loads((out / "header.json").read_text())
        if old != head:
            diff = sorted(k for k in head if old.get(k) != head[k])
            raise KimiStudentError(
                f"{out} holds drafter data of other settings ({', '.join(diff)}): use another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "header.json").write_text(json.dumps(head, indent=1) + "\n")
    _, items, _ = generate(n, seed, split)
    gen = HFGenerator(target, max_new, batch_size=1, dtype="fp32")
    chat: ChatTokenizer = gen.chat
    turns = loop_turns(items)
    prompts = [chat.prompt_ids(c) for c, _, _ in turns]
    own = [data_answer(chat.tok, t, last, chat.tok.eos_token_id, max_new) for _, t, last in turns]
    groups = [prompts[i : i + SHARD] for i in range(0, len(prompts), SHARD)]
    torch.manual_seed(seed)
    bar = tqdm(total=len(prompts), desc="drafter data", unit="prompt", disable=not progress)
    tokens_total = 0
    for k, group in enumerate(groups):
        path = out / f"shard-{k:05d}.safetensors"
        if path.exists():
            bar.update(len(group))
            continue
        order = sorted(range(len(group)), key=lambda i: len(group[i]))  # similar lengths batch together
        said: list[list[int]] = own[k * SHARD : k * SHARD + len(group)]
        for b in range(0, len(order), batch) if answers == "worker" else []:
            idx = order[b : b + batch]
            with torch.no_grad():
                for i, a in zip(
                    idx,
                    greedy_decode(gen.model, [group[i] for i in idx], chat.pad_id, gen.stop, max_new),
                    strict=True,
                ):
                    said[i] = a
            bar.update(len(idx))
        if answers == "data":
            bar.update(len(group))
        seqs = [p + a for p, a in zip(group, said, strict=True)]
        with torch.no_grad():
            states = [
                gen.model(input_ids=torch.tensor([s]), output_hidden_states=True).hidden_states[-1][0]
                for s in seqs
            ]
        tmp = temp_path(path)
        save_file(
            {
                "tokens": torch.tensor([t for s in seqs for t in s], dtype=torch.int32),
                "lengths": torch.tensor([len(s) for s in seqs]),
                "prompt_lengths": torch.tensor([len(p) for p in group]),
                "states": torch.cat(states).half(),
            },
            str(tmp),
        )
        tmp.chmod(0o644)
        tmp.replace(path)
        tokens_total += sum(map(len, seqs))
    bar.close()
    return {**head, "prompts": len(prompts), "shards": len(groups)}
