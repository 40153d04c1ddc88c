"""The fixtures fingerprint names what a broker replays: file names, contents and folder precedence,
never where the folders lie on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

from kimi_student.tools.broker import DEFAULT_FIXTURES, ToolBroker, fixtures_sha256


def two_folders(root: Path) -> tuple[Path, Path]:
    """A dataset-style folder (one tool's file, edited) and a copy of the base fixtures."""
    base = root / "base"
    shutil.copytree(DEFAULT_FIXTURES, base)
    own = root / "own"
    own.mkdir()
    name = sorted(p.name for p in base.glob("*.jsonl"))[0]
    (own / name).write_text(
        (base / name).read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8"
    )
    return own, base


def test_the_digest_does_not_depend_on_where_the_folders_lie(tmp_path: Path) -> None:
    # "a..." sorts before "z..." and after it: the old digest sorted by full path and changed here
    own1, base1 = two_folders(tmp_path / "a")
    own2, base2 = two_folders(tmp_path / "z")
    (tmp_path / "m").mkdir()
    moved = shutil.move(str(base2), tmp_path / "m" / "base")
    assert fixtures_sha256([own1, base1]) == fixtures_sha256([own2, moved])
    assert fixtures_sha256([own1, base1]) == fixtures_sha256([own1, moved])


def test_the_digest_follows_precedence_and_content(tmp_path: Path) -> None:
    own, base = two_folders(tmp_path)
    assert fixtures_sha256([own, base]) != fixtures_sha256([base, own])  # the earlier folder wins
    assert len(ToolBroker.from_folders([own, base]).fixtures) == len(
        ToolBroker.from_folders([base, own]).fixtures
    )
    before = fixtures_sha256([own, base])
    f = next(own.glob("*.jsonl"))
    f.write_text(f.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert fixtures_sha256([own, base]) != before


def test_one_folder_digest_is_the_sorted_file_digest(tmp_path: Path) -> None:
    """A single folder keeps the digest it always had (datasets record it in their header)."""
    from kimi_student.fingerprint import sha256_files

    own, base = two_folders(tmp_path)
    assert fixtures_sha256([base]) == sha256_files(base.glob("*.jsonl"))
