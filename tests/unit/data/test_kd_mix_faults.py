"""kd-mix in process with a scripted teacher (review reliability.md D8, D17, D18): a cached answer an
older version stored wrongly is asked again, repeated prompts are not "from cache", the scratch folder of
a run killed while assembling is removed, and every command's --help renders (Rich markup)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kimi_student.data.kd_mix import Cache, build_kd_mix, prompt_set_sha256, read_logprobs, usable
from kimi_student.teachers.base import Decoding, TeacherReply, TeacherRequest
from tests.support import killed_at_rename, ks_here, temp_litter


class Scripted:
    id = "scripted"
    concurrency = 2

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def complete(self, request: TeacherRequest) -> TeacherReply:
        self.asked.append(request.id)
        return TeacherReply("ok", "stop", [1, 2], [[1, 2], [3, 4]], [[-0.1, -2.0], [-0.2, -3.0]], 1.0)

    async def aclose(self) -> None:
        pass


def reqs(*prompts: str) -> list[TeacherRequest]:
    d = Decoding(4, top_logprobs=2)
    return [TeacherRequest(f"p{i}", ({"role": "user", "content": p},), d) for i, p in enumerate(prompts)]


def test_repeated_prompts_are_asked_once_and_not_counted_as_from_cache(tmp_path: Path) -> None:
    t, rs = Scripted(), reqs("a", "b", "a", "a")
    header = build_kd_mix(t, rs, tmp_path / "kd.jsonl", prompt_set_sha256(rs))
    assert header["ok"] == 4 and header["from_cache"] == 0 and header["repeated"] == 2
    assert sorted(t.asked) == ["p0", "p1"]
    header = build_kd_mix(Scripted(), rs, tmp_path / "kd.jsonl", prompt_set_sha256(rs))
    assert header["from_cache"] == 2 and header["repeated"] == 2


@pytest.mark.parametrize(
    "stored",
    [
        {"text": [{"type": "text", "text": "hi"}]},
        {"text": 5},
        {
            "text": "x",
            "topk_ids": [[1, 2], [3]],
            "topk_logprobs": [[-1.0, -2.0], [-1.0]],
            "token_ids": [1, 3],
        },
        {"text": "x", "topk_ids": [[1]], "topk_logprobs": [], "token_ids": []},
        {"text": "x", "topk_ids": ["a"], "topk_logprobs": ["b"], "token_ids": []},
    ],
    ids=["text-list", "text-number", "ragged", "unequal", "rows-not-lists"],
)
def test_a_cached_answer_that_would_not_assemble_is_asked_again(stored: dict, tmp_path: Path) -> None:
    """Older versions cached these (llama.cpp's unequal top lists, content given as a list or a number);
    kd-mix then crashed ("inhomogeneous shape") or wrote `status: ok` with non-string text, every rerun."""
    assert not usable(stored)
    t, rs = Scripted(), reqs("a")
    out = tmp_path / "kd.jsonl"
    cache = Cache(out.parent / (out.name + ".cache"))
    path = cache.path(rs[0].key(t.id))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stored))
    header = build_kd_mix(t, rs, out, prompt_set_sha256(rs))
    assert header["ok"] == 1 and t.asked == ["p0"] and header["logprob_k"] == 2


def test_scratch_shards_of_a_killed_assembly_are_removed(tmp_path: Path) -> None:
    from tests.support import dead_pid

    out, pid = tmp_path / "kd.jsonl", dead_pid()
    for n in range(3):
        (tmp_path / f".kd.jsonl.logprobs.{pid}.{n:04x}.tmp").mkdir()  # killed assemblies' scratch folders
    (tmp_path / f".other.jsonl.logprobs.{pid}.0.tmp").mkdir()  # another output's: not ours to remove
    rs = reqs("a", "b")
    build_kd_mix(Scripted(), rs, out, prompt_set_sha256(rs))
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert left == [f".other.jsonl.logprobs.{pid}.0.tmp"]
    assert (tmp_path / "kd.jsonl.logprobs" / "shard-00000.npz").is_file()


def test_every_help_renders() -> None:
    """`kd-mix --help` crashed on the Rich markup `[/v1]` in the --teacher help."""
    import typer

    from kimi_student.cli.main import app

    def paths(cmd: Any, prefix: list[str]) -> list[list[str]]:
        subs = getattr(cmd, "commands", {}).values()
        return [prefix] + [p for c in subs for p in paths(c, [*prefix, c.name or ""])]

    every = paths(typer.main.get_command(app), [])
    assert ["kd-mix"] in every and len(every) > 10
    for path in every:
        r = ks_here(*path, "--help")
        assert r.returncode == 0 and "Usage: kimi-student" in r.stdout, (path, r.stdout, r.stderr)


# ---- the KD file and its logprob shards, replaced together -----------------------------------------------


class ByPrompt(Scripted):
    """Logprob rows that depend on the prompt: a record read through another run's shards shows."""

    async def complete(self, request: TeacherRequest) -> TeacherReply:
        n = 10 + sum(str(request.messages[-1]["content"]).encode()) % 1000
        return TeacherReply("ok", "stop", [n, n], [[n, 1], [n, 2]], [[-0.1, -2.0], [-0.2, -3.0]], 1.0)


def _kd(out: Path, *prompts: str) -> None:
    rs = reqs(*prompts)
    build_kd_mix(ByPrompt(), rs, out, prompt_set_sha256(rs))


def _whole(out: Path) -> bytes:
    """The KD file after checking each record's logprob rows, read as a reader finds them, are its own."""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for rec in rows[1:]:
        n = 10 + sum(rec["messages"][-1]["content"].encode()) % 1000
        assert read_logprobs(out, rec)["topk_ids"][:, 0].tolist() == [n, n], rec["id"]
    return out.read_bytes()


def test_a_kill_at_every_rename_or_removal_leaves_the_old_pair_or_the_new_one(tmp_path: Path) -> None:
    """The KD file and `.logprobs` were two renames: a kill between them paired a file with another run's
    shards (records pointing at the wrong rows, silently)."""
    old_prompts, new_prompts = ("a", "b"), ("b", "c", "a")  # record p0 points at other rows in each
    ref = tmp_path / "ref" / "kd.jsonl"
    _kd(ref, *new_prompts)
    new, seen, step = ref.read_bytes(), set(), 1
    while True:
        out = tmp_path / f"s{step}" / "kd.jsonl"
        _kd(out, *old_prompts)
        old = out.read_bytes()
        if not killed_at_rename(step, lambda: _kd(out, *new_prompts)):  # noqa: B023 - called at once
            assert _whole(out) == new  # ran to the end: every moment was tried
            break
        assert _whole(out) in (old, new)
        seen.add(out.read_bytes() == new)
        _kd(out, *new_prompts)  # the next run settles what the kill left, and leaves nothing behind
        assert _whole(out) == new
        assert sorted(p.name for p in out.parent.iterdir()) == [
            "kd.jsonl",
            "kd.jsonl.cache",
            "kd.jsonl.logprobs",
        ]
        assert temp_litter(out.parent) == []
        step += 1
    assert seen == {False, True} and step > 4  # killed both before and after the KD file went in


def test_scratch_folders_of_older_versions_go_on_the_next_run(tmp_path: Path) -> None:
    """Before this version, a kill while assembling left `.shards.XXXXXXXX` (then `.kd.jsonl.shards.X…`)
    beside the output, which no later run removed (review D17: six or more accumulated)."""
    out = tmp_path / "kd.jsonl"
    for name in (".shards.ab_cd12z", ".shards.00000000", ".kd.jsonl.shards.k3j4h5g6"):
        (tmp_path / name).mkdir()
    (tmp_path / ".shards.ab_cd12z" / "shard-00000.npz").write_bytes(b"half")
    keep = tmp_path / ".shards.mine1234"  # not a scratch folder: holds something else
    keep.mkdir()
    (keep / "notes.txt").write_text("x")
    (tmp_path / ".other.jsonl.shards.k3j4h5g6").mkdir()  # another output's
    _kd(out, "a", "b")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        ".other.jsonl.shards.k3j4h5g6",
        ".shards.mine1234",
    ]
