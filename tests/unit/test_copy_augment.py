"""Copy augmentation of whole conversations (recipes/copy_augment.py): a copy has new values, the same in
every place the old ones were, still parses, and never holds a held-out value. ~3 s (generates 700 items)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from kimi_student.chat.transcript import parse_transcript, to_byte_spans
from kimi_student.data.contextual import copied_from, copy_id, generate
from kimi_student.data.disjoint import TrainingMemory, leaks, value_atoms
from kimi_student.errors import InputError
from kimi_student.numbers import format_number
from kimi_student.recipes.copy_augment import (
    COMPUTED,
    WORLD_WORDS,
    ValuePool,
    augmented_conversation,
    augmented_set,
    swap_table,
)
from kimi_student.recipes.worker_e2e import disjointness


@pytest.fixture(scope="module")
def train() -> list[dict]:
    return generate(300, 3)[1]


@pytest.fixture(scope="module")
def heldout() -> list[dict]:
    return generate(400, 3, "heldout")[1]


def _values(value: object) -> str:
    """The leaves of a JSON value, one a line (keys left out: they are never swapped)."""
    if isinstance(value, dict):
        return "\n".join(_values(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(_values(v) for v in value)
    return json.dumps(value, ensure_ascii=False).strip('"')


def _places(item: dict) -> dict[str, str]:
    m = item["metadata"]
    return {
        "prompt": item["prompt"],
        "teacher_text": item["teacher_text"],
        "calls": _values([c["arguments"] for c in m["call_sequence"]]),
        "results": _values([r["result"] for r in m["tool_results"]]),
    }


def _count(word: str, text: str) -> int:
    return len(re.findall(r"(?<![0-9A-Za-z])" + re.escape(word) + r"(?![0-9A-Za-z])", text))


def test_a_copy_swaps_each_value_in_every_place_and_still_parses(train: list[dict]) -> None:
    pool = ValuePool(train)
    swapped = numbers = 0
    for i, item in enumerate(train):
        if item["metadata"]["scenario"] in COMPUTED:  # redrawn instead (the test below)
            continue
        table = swap_table(item, random.Random(i), pool)
        copy = augmented_conversation(item, random.Random(i), pool)
        if copy is None:
            continue
        swapped += 1
        assert copy["id"] == item["id"] + "~copy0" and copy["teacher_text"] != item["teacher_text"]
        before, after = _places(item), _places(copy)
        for old, new in table.items():
            numbers += old.isdigit()
            for place, text in before.items():
                if _count(old, text) and old not in new:  # the old value is gone, the new one in its place
                    assert _count(old, after[place]) == 0, (item["id"], old, place)
                    assert _count(new, after[place]) >= _count(old, text), (item["id"], old, new, place)
        hosts = re.compile(r"://[^/\s\"]+|[\w.+-]+@[\w.-]+")  # URL hosts and e-mails stay as they were
        assert set(hosts.findall(copy["teacher_text"])) == set(hosts.findall(item["teacher_text"]))
        t = parse_transcript(copy["teacher_text"])
        assert [c.error for c in t.calls] == [None] * len(t.calls)  # every call valid JSON
        gold = copy["metadata"]["call_sequence"]
        assert [{"name": c.name, "arguments": c.arguments} for c in t.calls] == [
            {"name": c["name"], "arguments": c["arguments"]} for c in gold
        ]
        assert len(t.spans) == len(parse_transcript(item["teacher_text"]).spans)
        assert copy["metadata"]["integration_spans_bytes"] == to_byte_spans(copy["teacher_text"], t.spans)
    with_calls = sum(
        bool(it["metadata"]["call_sequence"]) and it["metadata"]["scenario"] not in COMPUTED for it in train
    )
    assert swapped > with_calls * 0.6 and numbers > 20


def test_a_computed_item_is_redrawn_with_new_operands_and_results(train: list[dict]) -> None:
    """Arithmetic and code_run results are computed from the request: a copy is another item of the same
    stratum and kind, its calls run again, its answer stating its own results."""
    pool = ValuePool(train)
    computed = [
        it for it in train if it["metadata"]["scenario"] in COMPUTED and it["metadata"]["call_sequence"]
    ]
    assert len(computed) > 40
    labels = (
        "scenario",
        "structure",
        "complexity",
        "locale",
        "expected_behaviour",
        "adversarial",
        "long_context",
    )
    for item in computed:
        copy = augmented_conversation(item, random.Random(0), pool, 1)
        if item["metadata"]["adversarial"] and item["metadata"]["adversarial"]["kind"] == "range_violation":
            assert copy is None
            continue
        assert copy is not None and copy == augmented_conversation(item, random.Random(5), pool, 1)
        assert copy["id"] == item["id"] + "~copy1"
        assert (
            copy["prompt"] != item["prompt"]
            and copy["metadata"]["tool_results"] != item["metadata"]["tool_results"]
        )
        assert [copy["metadata"][k] for k in labels] == [item["metadata"][k] for k in labels]
        t = parse_transcript(copy["teacher_text"])
        assert [{"name": c.name, "arguments": c.arguments} for c in t.calls] == [
            {"name": c["name"], "arguments": c["arguments"]} for c in copy["metadata"]["call_sequence"]
        ] or item["metadata"]["expected_behaviour"] == "retry"
        assert copy["metadata"]["integration_spans_bytes"] == to_byte_spans(copy["teacher_text"], t.spans)
        if copy["metadata"]["scenario"] == "arithmetic":  # the answer states the recomputed subtotal
            meta = copy["metadata"]
            value = next(r["result"]["value"] for r in meta["tool_results"] if r["result"]["ok"])
            assert f"The subtotal is {format_number(value, meta['locale'], 2)}." in copy["teacher_text"]
            assert str(value) not in item["teacher_text"]


def test_a_number_is_swapped_in_its_locale_spelling_too() -> None:
    item = {
        "id": "x",
        "prompt": "CAWS/1\n\nUser: How many downloads has corelog?",
        "teacher_text": (
            '<tool_call>{"name": "http.get", "arguments": {"url": "https://x.test/corelog"}}</tool_call>\n'
            '<tool_response>{"ok": true, "body": {"weekly_downloads": 5599820}}</tool_response>\n'
            "Integration: corelog has 5.599.820 weekly downloads, not 15.599.8201."
        ),
        "metadata": {
            "scenario": "api_lookup",
            "locale": "de-DE",
            "call_sequence": [{"name": "http.get", "arguments": {"url": "https://x.test/corelog"}}],
            "tool_results": [
                {"name": "http.get", "result": {"ok": True, "body": {"weekly_downloads": 5599820}}}
            ],
        },
    }
    pool = ValuePool([item])
    pool.words, pool.numbers, pool.structure = {"lower": ["datebox"]}, {7: ["1234567"]}, set()
    copy = augmented_conversation(item, random.Random(0), pool)
    assert copy is not None
    assert copy["teacher_text"].endswith(
        "Integration: datebox has 1.234.567 weekly downloads, not 15.599.8201."
    )
    assert '"weekly_downloads": 1234567' in copy["teacher_text"]
    assert copy["metadata"]["tool_results"][0]["result"]["body"]["weekly_downloads"] == 1234567
    assert copy["metadata"]["call_sequence"][0]["arguments"]["url"] == "https://x.test/datebox"
    assert copy["prompt"].endswith("How many downloads has datebox?")


def test_copies_never_draw_a_held_out_value(train: list[dict], heldout: list[dict]) -> None:
    copies, pool = augmented_set(train, 2, 3)
    assert len(copies) > len(train)
    assert leaks(heldout, TrainingMemory(copies)) == []
    seen = TrainingMemory(train)
    held_words = {w for it in heldout for a, _ in value_atoms(it) for w in re.findall(r"[0-9a-z]+", a)}
    held_only = held_words - seen.words
    assert held_only  # the held-out split has words training never has: none of them may be drawn
    drawn = {v.casefold() for v in pool.values()}
    assert drawn and not drawn & held_only
    assert not {n for ns in pool.numbers.values() for n in ns} & {
        a for it in heldout for a, _ in value_atoms(it)
    }


def test_invented_words_are_new_training_part_words_swapped_in_every_place(
    train: list[dict], heldout: list[dict]
) -> None:
    copies, pool = augmented_set(train, 1, 3, "invented")
    again, _ = augmented_set(train, 1, 3, "invented")
    assert copies == again  # the seed draws them
    assert len(copies) > len(train) // 2
    assert leaks(heldout, TrainingMemory(copies)) == []
    known = {
        w.casefold()
        for it in train + heldout
        for a, _ in value_atoms(it)
        for w in re.findall(r"[0-9a-z]+", a)
    }
    swapped = 0
    for it in train[:80]:
        table = swap_table(it, random.Random(7), pool)
        for old, new in table.items():
            if old[:1].isdigit():
                continue
            swapped += 1
            assert new.casefold() not in known, (old, new)
            assert new.casefold() not in WORLD_WORDS  # no pool's value, held-out or training
            assert (old.isupper(), old.islower()) == (new.isupper(), new.islower()), (old, new)
        copy = augmented_conversation(it, random.Random(7), pool)
        if copy is not None and it["metadata"]["scenario"] not in COMPUTED:
            for old, new in table.items():
                for place, text in _places(it).items():
                    assert _count(new, _places(copy)[place]) >= _count(old, text) > -1, (place, old, new)
    assert swapped > 50
    with pytest.raises(ValueError, match="words_from"):
        ValuePool(train, "made-up")


def test_a_leak_into_training_stops_the_run_before_training(train: list[dict], heldout: list[dict]) -> None:
    ok = disjointness(heldout[:20], train, Path("c.yaml"))
    assert ok["pass"] and ok["leaks"] == 0 and ok["atoms_checked"] > 20
    with pytest.raises(InputError, match="held-out value in the training set: ctx-heldout-3-"):
        disjointness(heldout[:20], [*train, heldout[5]], Path("c.yaml"))


def test_computed_items_get_their_own_number_of_redrawn_copies(
    train: list[dict], heldout: list[dict]
) -> None:
    """`computed_copies`: the scenarios whose numbers the answer restates in the locale (COMPUTED) get more
    redrawn operands than the rest get swapped copies; every copy distinct, none leaking held-out values."""
    copies, _ = augmented_set(train, 1, 3, "invented", computed_copies=3)
    per: dict[str, list[dict]] = {}
    for c in copies:
        per.setdefault(copied_from(c["id"]), []).append(c)
    computed = [
        it for it in train if it["metadata"]["scenario"] in COMPUTED and it["metadata"]["call_sequence"]
    ]
    assert computed
    for it in computed:
        got = per.get(it["id"], [])
        assert [c["id"] for c in got] == [copy_id(it["id"], k) for k in range(3)]
        assert len({c["teacher_text"] for c in got} | {it["teacher_text"]}) == 4  # new operands each time
    others = [it for it in train if it["metadata"]["scenario"] not in COMPUTED]
    assert all(len(per.get(it["id"], [])) <= 1 for it in others)
    assert sum(len(per.get(it["id"], [])) for it in others) > len(others) // 2
    assert leaks(heldout, TrainingMemory(copies)) == []
    plain, _ = augmented_set(train, 1, 3, "invented")
    assert len(copies) - len(plain) == 2 * len(computed)


def test_fresh_numbers_bring_download_counts_training_never_had(
    train: list[dict], heldout: list[dict]
) -> None:
    """`numbers_from="fresh"`: a swapped copy's result numbers are drawn anew (same digit count, the
    training side of the value split), so api_lookup's copies show download counts the registry never held;
    none is a held-out value, the run is deterministic, and the default keeps training's own numbers."""

    def downloads(items: list[dict]) -> set[str]:
        return {
            m
            for it in items
            for m in re.findall(r'"weekly_downloads": (\d+)', json.dumps(it["metadata"]["tool_results"]))
        }

    registry = downloads(train)
    plain, _ = augmented_set(train, 1, 3, "invented")
    fresh, _ = augmented_set(train, 1, 3, "invented", numbers_from="fresh")
    assert downloads(plain) <= registry  # a swap only moves the registry's own counts around
    new = downloads(fresh) - registry
    assert len(new) >= 0.9 * len(downloads(fresh)) and len(new) > 2 * len(registry)
    assert all(len(n) in {len(r) for r in registry} for n in new)
    answers = [c for c in fresh if "downloads" in c["teacher_text"].rsplit("</tool_response>", 1)[-1]]
    api = next(c for c in answers if downloads([c]) & new)
    n = next(iter(downloads([api]) & new))
    assert format_number(int(n), api["metadata"]["locale"]) in api["teacher_text"]  # the answer restates it
    assert leaks(heldout, TrainingMemory(fresh)) == []
    assert augmented_set(train, 1, 3, "invented", numbers_from="fresh")[0] == fresh
    with pytest.raises(ValueError, match="numbers_from"):
        augmented_set(train, 1, 3, "invented", numbers_from="random")
