"""Seals: an HMAC-SHA256 under a per-user secret key, so a file that anyone able to write a shared folder
could rewrite (a checkpoint's manifest, later eval shards and resume rows) can be told from one this user's
own runs wrote. A sha256 beside the data proves nothing: whoever changes the data recomputes it.

The key is the user's, not the run's: `KIMI_STUDENT_RUN_KEY` (hex, at least 16 bytes) if set, else 32
random bytes kept as hex in `$XDG_CONFIG_HOME/kimi-student/run.key` (`~/.config/...` by default), created
on first use, atomically, with mode 0600. It is never logged or written anywhere else.

A seal binds an `identity` (what the payload claims to be, e.g. "train-checkpoint <config sha256>
step-000020") to a `payload` (the exact bytes to protect, e.g. `canonical_json(manifest)`), so a sealed
payload moved to another identity no longer checks.

What it protects against: rewritten, forged or swapped files in a folder others can write, and files
carried over from another user or machine. What not: anyone who can read the key (code running as this
user), or a genuine sealed file of the same identity put back (an older copy of the same thing).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from kimi_student.errors import KimiStudentError

ENV = "KIMI_STUDENT_RUN_KEY"
KEY_BYTES = 32  # a new key file's
MIN_KEY_BYTES = 16  # the shortest key accepted from the environment


class IntegrityError(KimiStudentError):
    """The run key cannot be used (bad `KIMI_STUDENT_RUN_KEY`, a key file others can read): exit code 2."""


def key_path() -> Path:
    """Where the key file lives: $XDG_CONFIG_HOME (when absolute) or ~/.config, then kimi-student/run.key."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "kimi-student" / "run.key"


def ensure_key() -> None:
    """The key is usable now (the key file made if missing): a long run that will seal fails at its start,
    not at its first checkpoint."""
    _key(create=True)


def seal(identity: str, payload: bytes) -> str:
    """The hex HMAC-SHA256 of `payload` as `identity`; creates the key file on first use."""
    return _mac(_key(create=True), identity, payload)


def check_seal(identity: str, payload: bytes, mac: str) -> bool:
    """Whether `mac` is this user's seal of `payload` as `identity`. Never creates a key: with none yet,
    nothing can have been sealed by this user, so the answer is False."""
    key = _key(create=False)
    return key is not None and isinstance(mac, str) and hmac.compare_digest(_mac(key, identity, payload), mac)


def _mac(key: bytes, identity: str, payload: bytes) -> str:
    ident = identity.encode("utf-8")
    # length-prefixed, so no (identity, payload) pair can be spelt as another
    message = b"kimi-student seal 1\n" + str(len(ident)).encode() + b":" + ident + payload
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _key(create: bool) -> bytes | None:
    env = os.environ.get(ENV)
    if env is not None:
        return _parse(env.strip(), ENV)
    path = key_path()
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        return _create_key_file(path) if create else None
    except OSError as e:  # a symlink (not followed), a folder, no permission
        raise IntegrityError(f"{path}: cannot read the run key ({e.strerror})") from None


def _parse(text: str, where: object) -> bytes:
    """A hex key; the error never repeats the value."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise IntegrityError(f"{where}: not a hex run key") from None
    if len(key) < MIN_KEY_BYTES:
        raise IntegrityError(
            f"{where}: a run key needs at least {MIN_KEY_BYTES} bytes ({2 * MIN_KEY_BYTES} hex)"
        )
    return key


def _read_key_file(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise IntegrityError(
                f"{path}: a run key must be a regular file of yours that only you can read (chmod 600)"
            )
        data = fh.read(4 * KEY_BYTES)
    try:
        return _parse(data.decode("ascii").strip(), path)
    except UnicodeDecodeError:
        raise IntegrityError(f"{path}: not a hex run key") from None


def _create_key_file(path: Path) -> bytes:
    """32 random bytes, written to a private temp file and linked into place: a reader never sees half a
    key, and when two processes race, the first link wins and both use its key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(KEY_BYTES) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        os.unlink(tmp)
    return _read_key_file(path)
