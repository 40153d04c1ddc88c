"""Packing that never cuts an example: the stream's fill order puts short examples where padding would be."""

from __future__ import annotations

import numpy as np

from kimi_student.train.examples import Example, ExampleStream, fill_order, pack


def _examples(lengths: list[int]) -> list[Example]:
    return [
        Example(str(i), "gold", np.full(n, i + 1), 1, np.r_[0.0, np.ones(n - 1)].astype(np.float32))
        for i, n in enumerate(lengths)
    ]


def _mix(n: int, seed: int = 0) -> list[int]:
    """A Judge-like mix: a third long cases (900-1,300 tokens), the rest drills (100-400)."""
    r = np.random.default_rng(seed)
    return [int(r.integers(900, 1300)) if r.random() < 1 / 3 else int(r.integers(100, 400)) for _ in range(n)]


def _padding(
    stream: ExampleStream, examples: list[Example], rows: int, seq_len: int
) -> tuple[float, list[int]]:
    """The share of row positions that hold no example, and the examples the rows hold."""
    b = pack(examples, stream, seq_len, rows, truncate=False)
    src, seen = b["source"], []
    for row in range(rows):
        starts = [i for i in range(seq_len) if b["position_ids"][row, i] == 0 and src[row, i]]
        seen += [int(b["input_ids"][row, i]) - 1 for i in starts]
    return float(np.mean(src == 0)), seen


def test_the_fill_order_places_every_example_once_and_keeps_row_starts_in_order() -> None:
    lengths = np.array(_mix(500))
    perm = np.random.default_rng(3).permutation(500)
    order = fill_order(perm, lengths, 2048)
    assert sorted(order.tolist()) == list(range(500))
    assert not np.array_equal(order, perm)  # short examples moved forward
    where = {int(e): i for i, e in enumerate(perm)}
    # read as pack reads it: a row opens with the first example not yet placed, in perm's order; the rest of
    # each row are fillers, mostly short ones
    opened, fillers, placed, room = [], [], set(), 0
    for e in order.tolist():
        if lengths[e] > room:  # does not fit: opens the next row
            assert all(p in placed for p in range(where[e])), e
            opened.append(where[e])
            room = 2048
        else:
            fillers.append(e)
        placed.add(where[e])
        room -= lengths[e]
    assert opened == sorted(opened)
    assert fillers and np.mean(lengths[fillers]) < 0.7 * np.mean(lengths)  # measured 319 against 542


def test_filled_rows_carry_examples_where_plain_rows_carry_padding() -> None:
    lengths = _mix(3000)
    ex = _examples(lengths)
    plain, seen_plain = _padding(ExampleStream(len(ex), 0), ex, 150, 2048)
    filled, seen = _padding(ExampleStream(len(ex), 0, lengths=lengths, seq_len=2048), ex, 150, 2048)
    assert plain > 0.2 and filled < 0.04, (plain, filled)  # measured 0.269 and 0.024
    assert len(seen) > len(seen_plain) and len(set(seen)) == len(seen)  # more examples, none twice
    b = pack(ex, ExampleStream(len(ex), 0, lengths=lengths, seq_len=2048), 2048, 20, truncate=False)
    for row in range(20):  # never cut: every example in a row is whole
        pos, src = b["position_ids"][row], b["source"][row]
        starts = [i for i in range(2048) if pos[i] == 0] + [2048]
        for s, e in zip(starts, starts[1:]):
            if src[s]:
                assert e - s == lengths[int(b["input_ids"][row, s]) - 1]


def test_a_filled_stream_is_seeded_and_resumes_where_it_stood() -> None:
    lengths = _mix(400, seed=1)
    a = ExampleStream(400, 7, lengths=lengths, seq_len=2048)
    first = [a.next() for _ in range(650)]  # into the second epoch
    again = ExampleStream(400, 7, lengths=lengths, seq_len=2048)
    assert [again.next() for _ in range(650)] == first
    assert sorted(first[:400]) == list(range(400)) and first[400:] != first[:250]
    mid = ExampleStream(400, 7, lengths=lengths, seq_len=2048)
    for _ in range(300):
        mid.next()
    resumed = ExampleStream(400, 7, **mid.state(), lengths=lengths, seq_len=2048)
    assert [resumed.next() for _ in range(350)] == first[300:]
    other = ExampleStream(400, 8, lengths=lengths, seq_len=2048)
    assert [other.next() for _ in range(20)] != first[:20]


def test_an_example_that_does_not_fit_the_last_row_starts_the_next_batch() -> None:
    """Nothing is skipped between batches: one row a batch (the Judge's recipe) sees every example in turn,
    and a filled stream's rows hold what `fill_order` planned (the long case that opens a row included)."""
    lengths = _mix(600, seed=2)
    ex = _examples(lengths)
    for stream in (ExampleStream(600, 0), ExampleStream(600, 0, lengths=lengths, seq_len=2048)):
        order = [stream.peek()]
        seen: list[int] = []
        for _ in range(60):
            _, got = _padding(stream, ex, 1, 2048)
            seen += got
        assert seen[0] == order[0] and len(set(seen)) == len(seen)
        expect = (
            np.random.default_rng([0, 0]).permutation(600)
            if stream.lengths is None
            else fill_order(np.random.default_rng([0, 0]).permutation(600), np.array(lengths), 2048)
        )
        assert seen == expect[: len(seen)].tolist()
    assert sum(lengths[i] for i in seen) / (60 * 2048) > 0.96  # the filled stream's rows are nearly full
