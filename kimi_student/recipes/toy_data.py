"""The toy recipe's data: which contextual items make toy items, the held-out split by gold call, and the
copy augmentation of the training split (README, "Toy end-to-end": Task and Split)."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_student.chat.prompt import item_messages
from kimi_student.chat.transcript import format_call
from kimi_student.data.contextual import generate
from kimi_student.errors import InputError
from kimi_student.jsonl import write_jsonl
from kimi_student.recipes.copy_augment import WORD, map_leaves, string_leaves, word_kind, word_re
from kimi_student.recipes.toy_run import ToyRun
from kimi_student.resources import shown_path
from kimi_student.tools.normalize import fixture_key

SCENARIOS = ("web_research", "page_reading", "file_ops", "repo_nav", "api_lookup")


@dataclass(frozen=True)
class ToyItem:
    id: str
    scenario: str
    request: str
    call: dict[str, Any]  # the gold first call {name, arguments}

    @property
    def response(self) -> str:
        return format_call(self.call["name"], self.call["arguments"])

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.request}]


def is_toy_item(item: dict[str, Any]) -> bool:
    """A first call whose arguments the request states: other argument structures add arguments the request
    does not give (e.g. a random `top_k`), error-recovery items start with a deliberate failure the request
    cannot predict, and arithmetic, code_run and report_write compute or invent their arguments."""
    m = item["metadata"]
    return (
        m["scenario"] in SCENARIOS
        and m["structure"] == "flat_args"
        and m["complexity"] in ("single_call", "multi_call")
        and m["expected_behaviour"] == "normal"
        and bool(m["call_sequence"])
    )


def toy_item(item: dict[str, Any]) -> ToyItem:
    request = item_messages(item, "request")[0]["content"]  # the request after the CAWS header and context
    return ToyItem(item["id"], item["metadata"]["scenario"], request, item["metadata"]["call_sequence"][0])


def is_heldout(call: dict[str, Any], percent: int, seed: int) -> bool:
    """Deterministic by (seed, tool, normalised arguments): equal calls always land on the same side."""
    key = f"{seed}\x1f{call['name']}\x1f{fixture_key(call['name'], call['arguments'])}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 < percent


def build_data(n_items: int, seed: int, heldout_percent: int) -> tuple[list[ToyItem], list[ToyItem]]:
    _, items, _ = generate(n_items, seed)
    toy = [toy_item(it) for it in items if is_toy_item(it)]
    held = [t for t in toy if is_heldout(t.call, heldout_percent, seed)]
    train = [t for t in toy if not is_heldout(t.call, heldout_percent, seed)]
    return train, held


def word_pool(items: list[ToyItem]) -> dict[str, list[str]]:
    """The words of the training calls' string arguments, by shape (lower case, upper case, other)."""
    pool: dict[str, set[str]] = {}
    for t in items:
        for v in string_leaves(t.call["arguments"]):
            for w in WORD.findall(v):
                pool.setdefault(word_kind(w), set()).add(w)
    return {k: sorted(v) for k, v in sorted(pool.items())}


def copy_augmented(
    t: ToyItem, rng: random.Random, pool: dict[str, list[str]], keep: Callable[[dict[str, Any]], bool]
) -> ToyItem | None:
    """The item with the words of its string arguments that the request also states swapped for other
    training words (of the same shape), in the request and in the call alike. The new combination was
    never seen, so it is got right by copying from the request, not by recalling a call: what the held-out
    split asks for. `keep(call)` must accept the new call (it rejects calls of the held-out side).
    None when no argument word occurs in the request (e.g. an ambiguous, lower-cased request)."""
    words = {
        w
        for v in string_leaves(t.call["arguments"])
        for w in WORD.findall(v)
        if word_re([w]).search(t.request) and f"{w}://" not in v  # a URL keeps its scheme
    }
    if not words:
        return None
    mapping = {w: rng.choice(pool.get(word_kind(w)) or [w]) for w in sorted(words)}
    rx = word_re(sorted(words, key=len, reverse=True))

    def sub(text: str) -> str:
        return rx.sub(lambda m: mapping[m.group(0)], text)

    call = {"name": t.call["name"], "arguments": map_leaves(t.call["arguments"], _on_strings(sub))}
    return ToyItem(f"{t.id}~copy", t.scenario, sub(t.request), call) if keep(call) else None


def _on_strings(fn: Callable[[str], str]) -> Callable[[Any], Any]:
    return lambda v: fn(v) if isinstance(v, str) else v


def write_split(path: Path, items: list[ToyItem], header: dict[str, Any]) -> Path:
    """JSONL in the trainer's contextual shape: the response (`teacher_text`) is the gold first call."""
    rows = [
        {"id": t.id, "prompt": t.request, "teacher_text": t.response, "scenario": t.scenario, "call": t.call}
        for t in items
    ]
    write_jsonl(path, [{"__header__": True, **header}, *rows])
    return path


@dataclass
class ToyData:
    train: list[ToyItem]  # real training items
    copies: list[ToyItem]  # their copy-augmented versions
    heldout: list[ToyItem]
    train_jsonl: Path


def prepare_data(run: ToyRun, cfg: dict[str, Any], n: int, seed: int, config: Path) -> ToyData:
    """Generate, select, split, augment; write data/train.jsonl (real + copies) and data/heldout.jsonl."""
    d = cfg["data"]
    pct = int(d["heldout_percent"])
    train, held = build_data(n, seed, pct)
    if not train or not held:
        raise InputError(
            config, None, "data.items", f"{n} items give {len(train)} train / {len(held)} held out"
        )
    rng, pool = random.Random(seed), word_pool(train)

    def keep(call: dict[str, Any]) -> bool:
        return not is_heldout(call, pct, seed)

    n_copies = int(d.get("copy_augment", 0))
    copies = [c for t in train for _ in range(n_copies) if (c := copy_augmented(t, rng, pool, keep))]
    header = {"source": "contextual", "generated_items": n, "seed": seed, "config": shown_path(config)}
    path = write_split(run.train_jsonl, train + copies, {**header, "split": "train"})
    write_split(run.heldout_jsonl, held, {**header, "split": "heldout"})
    return ToyData(train, copies, held, path)


def data_summary(n: int, data: ToyData) -> dict[str, Any]:
    train_calls = {t.response for t in data.train + data.copies}
    return {
        "generated_items": n,
        "train_items": len(data.train),
        "train_copy_augmented": len(data.copies),
        "heldout_items": len(data.heldout),
        "train_distinct_calls": len(train_calls),
        "heldout_distinct_calls": len({t.response for t in data.heldout}),
        "heldout_calls_seen_in_train": sum(1 for t in data.heldout if t.response in train_calls),
        "heldout_by_scenario": dict(sorted(Counter(t.scenario for t in data.heldout).items())),
    }
