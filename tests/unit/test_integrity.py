"""kimi_student.integrity: the per-user run key (env override, else a private key file made once) and
HMAC seals that bind an identity to a payload."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kimi_student import integrity as I


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No env key; the key file under a temp XDG_CONFIG_HOME."""
    monkeypatch.delenv(I.ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "kimi-student" / "run.key"


def test_the_key_file_is_made_once_with_mode_0600(home: Path) -> None:
    assert I.key_path() == home
    assert not I.check_seal("id", b"data", "00" * 32) and not home.exists()  # checking never creates a key
    mac = I.seal("id", b"data")
    assert stat.S_IMODE(home.stat().st_mode) == 0o600
    assert len(bytes.fromhex(home.read_text().strip())) == I.KEY_BYTES
    assert [p.name for p in home.parent.iterdir()] == ["run.key"]  # no temp file left behind
    key = home.read_bytes()
    assert I.seal("id", b"data") == mac and home.read_bytes() == key  # reused, not remade
    assert I.check_seal("id", b"data", mac)


def test_the_default_key_file_is_under_dot_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert I.key_path() == tmp_path / ".config" / "kimi-student" / "run.key"


def test_a_seal_differs_per_identity_and_per_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = I.seal("step-1", b"payload")
    assert I.seal("step-2", b"payload") != mine
    assert not I.check_seal("step-2", b"payload", mine)  # moved to another identity
    assert not I.check_seal("step-1", b"payloaD", mine)  # tampered payload
    assert not I.check_seal("step-", b"1payload", mine)  # the boundary cannot be shifted
    monkeypatch.setenv(I.ENV, "ab" * 32)  # the environment overrides the key file
    theirs = I.seal("step-1", b"payload")
    assert theirs != mine and not I.check_seal("step-1", b"payload", mine)
    assert I.check_seal("step-1", b"payload", theirs)
    monkeypatch.delenv(I.ENV)
    assert I.check_seal("step-1", b"payload", mine) and not I.check_seal("step-1", b"payload", theirs)


def test_a_bad_env_key_is_refused_without_echoing_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("not-hex-secret", "abcd"):
        monkeypatch.setenv(I.ENV, bad)
        with pytest.raises(I.IntegrityError, match=I.ENV) as e:
            I.seal("id", b"x")
        assert bad not in str(e.value)
    assert not home.exists()


def test_a_key_file_others_can_read_is_refused(home: Path) -> None:
    I.seal("id", b"x")
    os.chmod(home, 0o644)
    with pytest.raises(I.IntegrityError, match="only you can read"):
        I.seal("id", b"x")
    home.unlink()
    home.symlink_to(home.parent / "elsewhere.key")
    (home.parent / "elsewhere.key").write_text("ab" * 32)
    os.chmod(home.parent / "elsewhere.key", 0o600)
    with pytest.raises(I.IntegrityError, match="cannot read the run key"):
        I.seal("id", b"x")  # a symlinked key file is not followed
