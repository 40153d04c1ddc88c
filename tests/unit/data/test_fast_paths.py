"""The data pipeline's fast paths against the plain versions they replaced (kept here only)."""

from __future__ import annotations

import random

from kimi_student.chat.transcript import char_to_byte_offsets
from kimi_student.data import world
from kimi_student.data.extract import byte_offsets


def test_byte_offsets_match_the_per_character_table():
    rng = random.Random(3)
    alphabet = [*"ab \n{}", "é", "中", "😀", "\ud800", "\udfff"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        positions = [rng.randint(0, len(text)) for _ in range(rng.randint(0, 8))]
        table = char_to_byte_offsets(text)
        assert byte_offsets(text, positions) == {p: table[p] for p in positions}


def ref_service_log(r: random.Random, needle: str) -> str:
    lines = []
    n = r.randint(60, 120)
    at = r.randrange(n)
    for i in range(n):
        t = f"2026-11-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00Z"
        lines.append(r.choice(world._LONG_FILLER).format(t=t, w=r.randint(1, 16), l=r.randint(1, 999)))
        if i == at:
            lines.append(f"{t} NOTE on-call says: {needle}")
    return "\n".join(lines)


def test_service_log_draws_the_numbers_randint_and_choice_draw():
    for seed in range(300):
        a, b = random.Random(seed), random.Random(seed)
        assert world.service_log(a, "x") == ref_service_log(b, "x")
        assert a.random() == b.random()  # and leaves the generator in the same state


def test_world_file_is_remembered_but_never_shared():
    path = f"{world.pool(world.DIRS)[0]}/{world.pool(world.FILES)[0]}"  # a file of the training world
    first = world.world_file(path)
    assert first is not None and world.world_file(path) == first
    first.append("changed by a caller")
    assert world.world_file(path) != first
    assert world.world_file("nope/x.py") is None
