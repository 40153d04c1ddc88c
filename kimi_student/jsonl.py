"""JSONL reading that names the line of any fault, and writing that never leaves half a file."""

from __future__ import annotations

import atexit
import gc
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from kimi_student.errors import InputError
from kimi_student.fingerprint import canonical_json
from kimi_student.outputs import refuse_special, room_for, temp_path


def read_jsonl(path: str | Path, model_text: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object). Blank lines are skipped; every other fault raises InputError.

    `model_text`: top-level fields that hold what a model wrote (a predictions file's `output`). A lone
    surrogate there is the model's, and the scorer gives it a row (scrubbed, marked as an error); anywhere
    else it is refused."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, None, None, "file not found")
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(p, lineno, None, f"not valid UTF-8 (byte {e.start})") from None
            if not text.strip():
                continue
            try:
                obj = _DECODER.decode(text)
            except json.JSONDecodeError as e:
                why = "truncated JSON" if not text.endswith("\n") else "malformed JSON"
                raise InputError(p, lineno, None, f"{why}: {e.msg} at column {e.colno}") from None
            except (ValueError, RecursionError) as e:  # NaN, an integer over 4300 digits, nesting too deep
                raise InputError(p, lineno, None, f"malformed JSON: {_why(e)}") from None
            if not isinstance(obj, dict):
                raise InputError(p, lineno, None, f"expected a JSON object, got {type(obj).__name__}")
            if _SURROGATE_ESCAPE.search(text):
                _refuse_lone_surrogates({k: v for k, v in obj.items() if k not in model_text}, p, lineno)
            yield lineno, obj


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NonFinite(f"{name} is not a JSON number")


# NaN and Infinity are not JSON: json.loads takes them, and every writer (allow_nan=False) then fails.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
# Only an escape can put a surrogate in a decoded string (raw UTF-8 cannot encode one): a line without
# one needs no walk.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _why(e: ValueError | RecursionError) -> str:
    if isinstance(e, RecursionError):
        return "nested too deep"
    if isinstance(e, _NonFinite):
        return str(e)
    if "integer string conversion" in str(e):
        return f"an integer of more than {sys.get_int_max_str_digits()} digits"
    return str(e)[:200]


def _refuse_lone_surrogates(obj: dict[str, Any], p: Path, lineno: int) -> None:
    try:
        where = lone_surrogate_at(obj)
    except RecursionError:
        raise InputError(p, lineno, None, "malformed JSON: nested too deep") from None
    if where is not None:
        raise InputError(p, lineno, where, "a lone surrogate escape (\\ud800-\\udfff) is not text")


def lone_surrogate_at(obj: Any, where: str = "") -> str | None:
    """The dotted field of the first string (a key or a value) holding a lone surrogate, or None. Such a
    string cannot be written as UTF-8, tokenized or hashed: every later stage would crash on it."""
    if isinstance(obj, str):
        return (where or "-") if _LONE_SURROGATE.search(obj) else None
    if isinstance(obj, dict):
        for k, v in obj.items():
            sub = f"{where}.{k}" if where else str(k)
            if _LONE_SURROGATE.search(k) or (sub := lone_surrogate_at(v, sub)) is not None:
                return sub
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if (sub := lone_surrogate_at(v, f"{where}[{i}]")) is not None:
                return sub
    return None


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (restored after, as it was). Reading or building a
    whole dataset makes millions of dicts and lists that all stay alive, and each full collection would
    walk every one of them again: a quarter of `contextual extract`. Nothing here makes cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            _settle()
            gc.enable()


def _settle() -> None:
    """Move every tracked object into the oldest generation, as if it had survived collections already.
    The objects a paused block made all sit in the youngest one, so the first collection after it would
    walk every one of them (a fifth of a second at 10k items) only to promote them; a full collection
    still frees any of them that turn into garbage. Skipped where a caller has frozen objects of its own
    (unfreeze would thaw those too)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def freeze_at_exit() -> None:
    """At interpreter exit, freeze what is still alive, so that the final collection does not walk the
    millions of objects a dataset left (a quarter of a second at 10k items; nothing here makes cycles
    worth collecting at exit)."""
    global _EXIT_FREEZE
    if not _EXIT_FREEZE:
        _EXIT_FREEZE = True
        atexit.register(gc.freeze)


@contextmanager
def whole_process_data() -> Iterator[None]:
    """For a command that reads or builds a whole dataset and then exits: no collection in the block,
    and nothing collected at exit (`freeze_at_exit`)."""
    freeze_at_exit()
    with gc_paused():
        yield


_EXIT_FREEZE = False


def dumps_line(obj: Any) -> str:
    return canonical_json(obj) + "\n"


@contextmanager
def atomic_writer(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temp file beside `path`; rename over it only if the block finishes. A device, FIFO,
    socket or folder there is refused, never replaced (a symlink is replaced, not followed: see
    `outputs.refuse_special`). Temps of `path` left by killed writers are removed first; a write that runs
    out of room is `outputs.NoRoomError` naming `path`, with the temp removed."""
    dest = Path(path)
    refuse_special(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest)  # after removing the temps killed writers left
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the usual mode, less the umask
    try:
        with room_for(dest), os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_jsonl(path: str | Path, rows: Any, chunk: int = 1024) -> None:
    """One canonical JSON object a line; lines go to the file `chunk` at a time, joined."""
    with gc_paused():
        write_lines(path, map(canonical_json, rows), chunk)


def write_lines(path: str | Path, lines: Iterable[str], chunk: int = 1024) -> None:
    """Lines already spelt (no newline in them), each ended by one, written `chunk` at a time."""
    with atomic_writer(path) as fh:
        batch: list[str] = []
        for line in lines:
            batch.append(line)
            if len(batch) == chunk:
                fh.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            fh.write("\n".join(batch) + "\n")


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_writer(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, ensure_ascii=False)
        fh.write("\n")
