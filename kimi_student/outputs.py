"""Where a command may write, checked before it does any work, and how files and folders are replaced.

Every command that writes calls `check_outputs` first: an output that is one of the inputs (or another
output) would silently replace it; a folder, device, FIFO or socket must never be replaced by a regular
file; an output folder that cannot be made or written would otherwise be found only after the work.

Temp files and folders are named `.<name>.<pid>.<hex>.tmp` beside their destination. A later write of the
same destination removes the ones whose process is gone (`clear_stale_temps`): a kill leaves no lasting
litter, and a writer still running (same pid namespace) keeps its temp. Writers on another host sharing
the folder are not told apart by pid; the project does not support that.

`pair_writer` replaces two outputs together or not at all: a dataset and its fixtures folder, eval's report
and results. `artifacts_writer` stages an export's files and publishes them, its manifest last.

A write that runs out of room (disk full, past the file-size limit, over quota) is `NoRoomError`, one line
naming the destination (`room_for`), never a traceback; the writers remove their temps on the way out.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from kimi_student.errors import InputError, KimiStudentError

PathLike = str | Path
Inputs = Mapping[str, PathLike | Iterable[PathLike] | None]
LEGACY_TEMP_AGE_S = 3600  # a pre-pid temp (`.<name>.XXXXXXXX.tmp`) this old belongs to no live writer
NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


class NoRoomError(KimiStudentError):
    """A write to `path` ran out of room: the CLI says so in one line (exit 2)."""

    def __init__(self, path: PathLike, why: str):
        self.path, self.why = Path(path), why
        super().__init__(f"{path}: cannot write it: {why} (disk full or past the file-size limit)")


@contextmanager
def room_for(path: PathLike, staged: bool = False) -> Iterator[None]:
    """An OSError of `NO_ROOM` inside the block becomes `NoRoomError` naming `path` (a failed write of
    an open file names no file of its own). With `staged`, so does a NoRoomError of a file written inside
    the block: a staging folder's file, when `path` is what the user asked for."""
    try:
        yield
    except NoRoomError as e:
        if not staged:
            raise
        raise NoRoomError(path, e.why) from None
    except OSError as e:
        if e.errno not in NO_ROOM:
            raise
        raise NoRoomError(path, e.strerror or os.strerror(e.errno or 0)) from None
    except Exception as e:  # a Rust writer's (safetensors): "I/O error: File too large (os error 27)"
        m = _RUST_OS_ERROR.search(str(e))
        if not m or int(m.group(1)) not in NO_ROOM:
            raise
        raise NoRoomError(path, os.strerror(int(m.group(1)))) from None


def _resolved(p: PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(p))))


def _identity(p: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(p)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _kind(p: Path) -> str | None:
    """What is at `p` (symlinks followed): None when nothing, else 'file', 'folder' or the special kind."""
    try:
        mode = os.stat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None  # nothing there (a folder on the way that is a file: found by _check_writable)
    except OSError as e:
        return f"path that cannot be examined ({e.strerror})"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"


def _input_paths(inputs: Inputs) -> Iterator[tuple[str, Path]]:
    for flag, value in inputs.items():
        if value is None:
            continue
        for p in [value] if isinstance(value, str | Path) else value:
            if os.path.lexists(p):
                yield flag, Path(p)


def _same(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    ia = _identity(a)
    return ia is not None and ia == _identity(b)  # a hard link, or a path through a bind mount


def check_outputs(
    inputs: Inputs,
    outputs: Mapping[str, PathLike | None],
    *,
    folders: Mapping[str, PathLike | None] | None = None,
    siblings: Mapping[str, tuple[str, ...]] | None = None,
) -> None:
    """Refuse, with one InputError naming both flags, before any work: an output (file in `outputs`,
    folder in `folders`, keyed by CLI flag) that is an input or another output; a file output that is a
    folder, device, FIFO or socket (symlinks followed), or whose sibling folder (`siblings`: flag ->
    suffix, e.g. '.fixtures') is not a folder; a folder output that is not a folder; an output whose
    folder cannot be made or written. An input that does not exist is skipped: nothing of it can be lost."""
    files = {f: Path(p) for f, p in outputs.items() if p is not None}
    dirs = {f: Path(p) for f, p in (folders or {}).items() if p is not None}
    ins = list(_input_paths(inputs))
    outs = list(files.items()) + list(dirs.items())
    for k, (flag, out) in enumerate(outs):
        for in_flag, inp in ins:
            if _same(out, inp):
                raise InputError(
                    out, None, flag, f"is the same file as {in_flag}: refusing to overwrite an input"
                )
        for other_flag, other in outs[:k]:
            if _same(out, other):
                raise InputError(
                    out, None, flag, f"is the same file as {other_flag}: two outputs cannot share it"
                )
    for flag, out in files.items():
        _check_kind(flag, out, "file")
        for suffix in (siblings or {}).get(flag, ()):
            _check_kind(flag, out.with_name(out.name + suffix), "folder")
        _check_writable(flag, _resolved(out).parent)
    for flag, out in dirs.items():
        _check_kind(flag, out, "folder")
        _check_writable(flag, _resolved(out))


def _check_kind(flag: str, path: Path, want: str) -> None:
    kind = _kind(path)
    if kind is not None and kind != want:
        why = f"is a {kind}, not a {want}" if kind in ("file", "folder") else f"is a {kind}"
        raise InputError(path, None, flag, f"{why}: refusing to write there")


def _check_writable(flag: str, folder: Path) -> None:
    """The nearest folder that exists on the way to `folder` takes a new file (probed by making one: as
    root, permission bits say nothing, but an immutable or read-only-mounted folder still refuses)."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(folder, None, flag, f"cannot make this folder: {probe} is not a folder")
    try:  # a probe that a kill left is removed by the next one
        name = temp_path(probe / "ks-probe")
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise InputError(probe, None, flag, f"folder is not writable ({e.strerror})") from None
    os.close(fd)
    os.unlink(name)


# ---- temp files beside their destination ---------------------------------------------------------------


def temp_path(dest: Path) -> Path:
    """A fresh temp name beside `dest` that `clear_stale_temps(dest)` recognises, once the temps of `dest` that
    killed writers left are removed (each writer clears its destination's: a kill leaves no lasting litter)."""
    clear_stale_temps(dest)
    return dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def temp_dir_beside(dest: Path) -> Path:
    """A new empty temp folder beside `dest` (made after removing the ones killed writers left)."""
    tmp = temp_path(dest)
    tmp.mkdir(parents=True)
    return tmp


@contextmanager
def folder_writer(dest: Path) -> Iterator[Path]:
    """A temp folder beside `dest` to fill; on success it replaces `dest` whole (made readable by all: a
    folder written is meant to be shared, whatever the umask), on failure it is removed and `dest` is kept."""
    tmp = temp_dir_beside(dest)  # a killed writer's temp folder is removed by the next one
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def artifacts_writer(out: Path, manifest: str) -> Iterator[Path]:
    """A temp folder inside `out` to write an export's artifacts and its `manifest` in; on success each
    artifact moves into `out` under its name (replacing the one there), `out/manifest` removed before the
    first and the new one moved in last. A kill leaves the old set with its manifest or the new set with
    its own (between the moves: no manifest, and each artifact the old or the new one whole, or for a
    folder's two renames missing), and half-written artifacts only in temps that the next export removes.
    Other files in `out` are left alone; on failure the temp folder goes and `out` is as it was."""
    out.mkdir(parents=True, exist_ok=True)
    stage = temp_dir_beside(out / "export-staging")
    try:
        yield stage
        if not (stage / manifest).is_file():
            raise RuntimeError(f"{stage}: the export wrote no {manifest}")  # a bug, not bad input
        with suppress(FileNotFoundError):
            (out / manifest).unlink()
        for item in sorted(stage.iterdir()):
            if item.name != manifest:
                dest = out / item.name
                aside = temp_path(dest)  # (and an old one that a kill left, removed)
                if dest.is_dir() and not dest.is_symlink():  # a folder is moved aside whole, then removed
                    os.replace(dest, aside)
                os.replace(item, dest)  # over a file or a symlink itself, never through it
                shutil.rmtree(aside, ignore_errors=True)
        os.replace(stage / manifest, out / manifest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def clear_stale_temps(dest: Path) -> None:
    """Remove the temp files and folders of `dest` left by writers that are gone: those whose pid is no
    live process, and pre-pid (mkstemp) ones over an hour old."""
    ours = re.compile(rf"\.{re.escape(dest.name)}\.(\d+)\.[0-9a-f]+\.tmp")
    legacy = re.compile(rf"\.{re.escape(dest.name)}\.[a-z0-9_]{{8}}\.tmp")
    try:
        names = os.listdir(dest.parent)
    except OSError:
        return
    for name in names:
        m = ours.fullmatch(name)
        if m and _alive(int(m.group(1))):
            continue
        p = dest.parent / name
        if not m:
            if not legacy.fullmatch(name):
                continue
            with suppress(OSError):
                if time.time() - os.lstat(p).st_mtime < LEGACY_TEMP_AGE_S:
                    continue
        _remove(p)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with suppress(FileNotFoundError):
            p.unlink()


def refuse_special(dest: Path) -> None:
    """A destination that exists must be a regular file or a symlink: a device, FIFO, socket or folder is
    never replaced. A symlink is replaced itself, never written through, so a link planted in a folder
    that is written to (a run folder is untrusted input) cannot aim a write at another file; the CLI's
    `check_outputs` refuses a link to anything but a regular file before the work."""
    kind = None if os.path.islink(dest) else _kind(dest)
    if kind not in (None, "file"):
        raise InputError(dest, None, None, f"is a {kind}, not a file: refusing to replace it")


# ---- two outputs replaced together ----------------------------------------------------------------------


def aside_path(other: Path) -> Path:
    """Where `pair_writer` keeps the old second member while it swaps in the new one (a reader who finds
    it there takes whichever of the two the first member on disk belongs to)."""
    return other.with_name(f".{other.name}.old")


def _staged(file: Path) -> bool:
    """Whether a writer that is gone left a new `file` in its staging folder (`temp_path` of it, holding
    the new file under its own name): it was killed before that file went in."""
    ours = re.compile(rf"\.{re.escape(file.name)}\.(\d+)\.[0-9a-f]+\.tmp")
    try:
        names = os.listdir(file.parent)
    except OSError:
        return False
    return any(
        (m := ours.fullmatch(n)) is not None
        and not _alive(int(m.group(1)))
        and os.path.lexists(file.parent / n / file.name)
        for n in names
    )


def settle_pair(file: Path, other: Path, belongs: Callable[[Path, Path], bool] | None = None) -> None:
    """Finish or undo a swap that a kill interrupted: the old second member set aside goes back when
    `file` is still the old one, and is removed otherwise. Whether it is the old one: `belongs(file,
    aside)` (the file names what it goes with), or, without `belongs`, whether the killed writer's new
    `file` is still staged beside it (it goes in last: while it is staged, the swap had not happened)."""
    aside = aside_path(other)
    if not os.path.lexists(aside):
        return
    old = _staged(file) if belongs is None else file.is_file() and belongs(file, aside)
    if old:
        if os.path.lexists(other):
            _remove(other)
        os.rename(aside, other)
    else:
        _remove(aside)


@contextmanager
def pair_writer(
    file: PathLike,
    other: PathLike,
    belongs: Callable[[Path, Path], bool] | None = None,
    *,
    other_is_folder: bool = True,
) -> Iterator[tuple[Path, Path]]:
    """Yield (new file, new other) paths, each in a staging folder beside its destination, to write the
    new pair into (`other` a folder made empty, or a file to create); if the block finishes they replace
    `file` and `other`: old other aside, new other in, new file in (the moment the new pair is in), old
    other removed. A kill at any point leaves the old pair or the new pair once `settle_pair` ran (here,
    at the start of the next write; a reader looks at the aside itself, see `aside_path`), and staging
    folders that `clear_stale_temps` removes. A dataset and its fixtures folder; eval's report and
    results (two folders, even two file systems: each member is renamed within its own folder)."""
    file, other = Path(file), Path(other)
    refuse_special(file)
    if not other_is_folder:
        refuse_special(other)
    for dest in (file, other):
        dest.parent.mkdir(parents=True, exist_ok=True)
    settle_pair(file, other, belongs)  # before the stages go: they tell what a killed writer had done
    stages = (temp_dir_beside(file), temp_dir_beside(other))
    new_file, new_other = stages[0] / file.name, stages[1] / other.name
    if other_is_folder:
        new_other.mkdir()
    aside = aside_path(other)
    try:
        with room_for(file, staged=True):
            yield new_file, new_other
        if os.path.lexists(other):
            os.rename(other, aside)
        os.rename(new_other, other)
        os.replace(new_file, file)
        _remove(aside)
    except BaseException:
        if os.path.lexists(aside):  # killed mid-swap in this process: undo it, or finish it
            if os.path.lexists(new_file):
                _remove(other)
                os.rename(aside, other)
            else:
                _remove(aside)
        raise
    finally:
        for stage in stages:
            _remove(stage)
