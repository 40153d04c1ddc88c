"""The held-out split (DESIGN.md "Held-out split"): a held-out set holds no value a training set holds,
proved on real files by `contextual verify --disjoint-from`, which names a planted training value."""

from __future__ import annotations

from pathlib import Path

from kimi_student.data import world
from kimi_student.data.contextual import generate
from kimi_student.data.disjoint import EXEMPT, TrainingMemory, leaks, value_atoms
from tests.support import ks_here, read_rows, write_rows


def test_every_pool_is_split_in_two_parts_that_share_nothing() -> None:
    for values in (world.SUBJECTS, world.HOSTS, world.PACKAGES, world.DIRS, world.FILES, world.SETTINGS):
        train, held = world._part(values, "train"), world._part(values, "heldout")
        assert train and held and not set(train) & set(held) and set(train) | set(held) == set(values)
        assert len(held) == max(1, len(values) // world.HELDOUT_SHARE)
    with world.split_world("heldout"):
        assert world.pool(world.SUBJECTS) == world._part(world.SUBJECTS, "heldout")
        assert all(
            world.value_split(world.draw(world.rng_for(i), lambda r: r.randint(2, 64))) == "heldout"
            for i in range(50)
        )
    assert world.current_split() == "train"


def test_heldout_items_have_their_own_ids_and_no_training_value() -> None:
    header, train, _ = generate(300, 4)
    assert header["split"] == "train" and generate(300, 4)[1] == train  # the default is the train split
    _, held, _ = generate(150, 4, "heldout")
    assert all(it["id"].startswith("ctx-heldout-4-") for it in held)
    assert not {it["id"] for it in held} & {it["id"] for it in train}
    assert leaks(held, TrainingMemory(train)) == []
    # the same sizes within one split do share values: the check can fail
    assert leaks(generate(150, 5)[1], TrainingMemory(train))


def test_value_atoms_are_leaves_of_calls_and_results_less_the_structural_keys() -> None:
    item = {
        "id": "x",
        "metadata": {
            "call_sequence": [{"name": "read_file", "arguments": {"path": "a/b.py", "max_lines": 50}}],
            "tool_results": [
                {"name": "read_file", "result": {"ok": True, "start_line": 1, "content": "K = 7\n\nJ = 9"}}
            ],
        },
    }
    atoms = [a for a, _ in value_atoms(item)]
    assert atoms == ["a/b.py", "k = 7", "j = 9"]
    assert {"ok", "start_line", "max_lines", "line", "rank", "bytes_written"} <= set(EXEMPT)


def test_verify_disjoint_from_passes_then_names_a_planted_training_value(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    held, report = tmp_path / "held.jsonl", tmp_path / "v.json"
    r = ks_here("contextual", "gen", "--n", 80, "--seed", 5, "--split", "heldout", "--out", held)
    assert r.returncode == 0, r.stdout + r.stderr
    r = ks_here("contextual", "verify", "--in", held, "--report", report, "--disjoint-from", dataset["gen"])
    assert r.returncode == 0, r.stdout + r.stderr
    # plant one training value (a read_file line) into a held-out tool result
    train_rows = read_rows(dataset["gen"])
    line = next(
        res["result"]["content"].splitlines()[0]
        for it in train_rows[1:]
        for res in it["metadata"]["tool_results"]
        if res["name"] == "read_file" and res["result"].get("ok")
    )
    rows = read_rows(held)
    target = next(it for it in rows[1:] if it["metadata"]["tool_results"])
    target["metadata"]["tool_results"][-1]["result"]["note"] = line
    planted = write_rows(tmp_path / "planted.jsonl", rows)  # beside held.jsonl's fixtures
    r = ks_here(
        "contextual", "verify", "--in", planted, "--report", report, "--disjoint-from", dataset["gen"]
    )
    assert r.returncode == 1
    assert f"{target['id']}: call" in r.stdout + r.stderr and repr(line.casefold()) in r.stdout + r.stderr
