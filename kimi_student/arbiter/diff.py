"""Unified diffs as `git diff`, `git show` and `diff -u` write them: which files a change touches and how many
lines it adds and removes. Pure: text in, `Diff` out.

Paths come from the `---`/`+++`, `rename`/`copy` and `diff --git` lines, in that order of trust (only the
`diff --git` line is ambiguous when a path holds a space), with git's C-style quoting undone and its default
`a/`, `b/` prefixes removed. Hunk bodies are read by the lengths their `@@` header declares, so a content
line that starts with `--- ` or `diff --git` is never taken for a header, and a diff cut short is an error,
not a smaller change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kimi_student.errors import InputError

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


@dataclass(frozen=True)
class FileChange:
    path: str  # after the change; for a deletion, the deleted path
    old_path: str | None  # before the change; None for an added file
    status: str  # added | deleted | modified | renamed | copied
    added: int
    removed: int
    binary: bool = False

    @property
    def touched(self) -> tuple[str, ...]:
        """Every path the change writes: a rename empties its old path too."""
        if self.old_path is not None and self.old_path != self.path and self.status == "renamed":
            return (self.old_path, self.path)
        return (self.path,)


@dataclass(frozen=True)
class Diff:
    files: tuple[FileChange, ...]

    @property
    def files_changed(self) -> int:
        return len(self.files)

    @property
    def lines_added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def lines_removed(self) -> int:
        return sum(f.removed for f in self.files)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p for f in self.files for p in f.touched)

    def stat(self) -> str:
        """What `git diff --stat` shows a reviewer: one line per file, then the totals."""
        rows = []
        for f in self.files:
            name = f"{f.old_path} => {f.path}" if f.status == "renamed" else f.path
            change = (
                "Bin"
                if f.binary
                else f"{f.added + f.removed} " + "+" * min(f.added, 40) + "-" * min(f.removed, 40)
            )
            rows.append(f" {name} | {change}")
        n = self.files_changed
        rows.append(
            f" {n} file{'s' if n != 1 else ''} changed, {self.lines_added} insertion{'s' if self.lines_added != 1 else ''}(+), "
            f"{self.lines_removed} deletion{'s' if self.lines_removed != 1 else ''}(-)"
        )
        return "\n".join(rows)


def unquote(token: str) -> str:
    """git's C-style quoted path (`"caf\\303\\251 menu.txt"`) as text; an unquoted token as it is."""
    if not (len(token) >= 2 and token[0] == '"' and token[-1] == '"'):
        return token
    body, out, i = token[1:-1], bytearray(), 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
        elif body[i + 1 : i + 4].isdigit() and len(body[i + 1 : i + 4]) == 3:
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(_ESCAPES.get(body[i + 1 : i + 2], ord(body[i + 1 : i + 2] or "\\")))
            i += 2
    return out.decode("utf-8", errors="surrogateescape")


def _strip(path: str, prefix: str) -> str | None:
    if path == "/dev/null":
        return None
    return path[len(prefix) :] if path.startswith(prefix) else path


def _header_path(rest: str, prefix: str) -> str | None:
    """The path of a `--- a/x` / `+++ b/x` line; `diff -u` appends a tab and a timestamp."""
    quoted = re.match(r'"(?:[^"\\]|\\.)*"', rest)  # git ends a quoted or spaced name with a tab
    token = quoted.group(0) if quoted else rest.split("\t", 1)[0]
    return _strip(unquote(token), prefix)


def _git_line_paths(rest: str) -> tuple[str, str] | None:
    """`a/x b/y` of a `diff --git` line. Unquoted paths with spaces are split where both halves name the
    same file (the only case git leaves ambiguous is a rename, which has its own `rename` lines)."""
    if rest.startswith('"') or rest.endswith('"'):
        m = re.match(r'^("(?:[^"\\]|\\.)*"|\S+) ("(?:[^"\\]|\\.)*"|\S+)$', rest)
        if m:
            return _strip(unquote(m.group(1)), "a/") or "", _strip(unquote(m.group(2)), "b/") or ""
        return None
    n = (len(rest) - 5) // 2
    if rest.startswith("a/") and rest[2 + n : 5 + n] == " b/" and rest[2 : 2 + n] == rest[5 + n :]:
        return rest[2 : 2 + n], rest[5 + n :]
    parts = rest.split(" ")
    if len(parts) == 2:
        return _strip(parts[0], "a/") or "", _strip(parts[1], "b/") or ""
    return None


class _File:
    """A file's header lines and counts while they are read."""

    def __init__(self, git_paths: tuple[str, str] | None) -> None:
        self.git_paths = git_paths
        self.old: str | None = None
        self.new: str | None = None
        self.rename_from = self.rename_to = None
        self.copy_from = self.copy_to = None
        self.new_file = self.deleted = self.binary = self.saw_headers = False
        self.added = self.removed = self.hunks = 0

    def change(self, source: str | Path | None, line: int) -> FileChange:
        if self.rename_from is not None:
            return FileChange(
                self.rename_to or "", self.rename_from, "renamed", self.added, self.removed, self.binary
            )
        if self.copy_from is not None:
            return FileChange(
                self.copy_to or "", self.copy_from, "copied", self.added, self.removed, self.binary
            )
        old, new = self.old, self.new
        if not self.saw_headers:
            if self.git_paths is None:
                raise InputError(source, line, "diff", "a `diff --git` line whose paths cannot be read")
            old, new = self.git_paths
            old = None if self.new_file else old
            new = None if self.deleted else new
        if old is None and new is None:
            raise InputError(source, line, "diff", "a file diff with /dev/null on both sides")
        if old is None:
            return FileChange(new or "", None, "added", self.added, self.removed, self.binary)
        if new is None:
            return FileChange(old, old, "deleted", self.added, self.removed, self.binary)
        return FileChange(new, old, "modified", self.added, self.removed, self.binary)


def parse_diff(text: str, source: str | Path | None = None) -> Diff:
    """Every file of a unified diff, in order. `source` names the diff in errors (file and line)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    files: list[FileChange] = []
    cur: _File | None = None
    start = 0
    i = 0

    def close() -> None:
        nonlocal cur
        if cur is not None:
            files.append(cur.change(source, start))
            cur = None

    while i < len(lines):
        line = lines[i].removesuffix("\r")  # a diff saved with CRLF ends its header lines with CR too
        if line.startswith(("diff --cc ", "diff --combined ")):
            raise InputError(
                source, i + 1, "diff", "a merge's combined diff: diff the merge against one parent"
            )
        if line.startswith("diff --git "):
            close()
            start = i + 1
            cur = _File(_git_line_paths(line[len("diff --git ") :]))
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if cur is None or cur.saw_headers:  # a plain `diff -u` file, or the next file of one
                close()
                start = i + 1
                cur = _File(None)
            cur.saw_headers = True
            cur.old = _header_path(line[4:], "a/")
            cur.new = _header_path(lines[i + 1][4:].removesuffix("\r"), "b/")
            i += 1
        elif cur is not None and line.startswith("@@"):
            m = _HUNK.match(line)
            if not m:
                raise InputError(source, i + 1, "diff", f"a malformed hunk header {line[:60]!r}")
            cur.hunks += 1
            old_left = int(m.group(2) if m.group(2) is not None else 1)
            new_left = int(m.group(4) if m.group(4) is not None else 1)
            while old_left > 0 or new_left > 0:
                i += 1
                if i >= len(lines):
                    raise InputError(
                        source,
                        i,
                        "diff",
                        f"the hunk at line {start} ends early ({old_left} old and {new_left} "
                        "new lines missing): the diff is cut short",
                    )
                body = lines[i]
                tag = body[:1]
                if tag == "+":
                    cur.added += 1
                    new_left -= 1
                elif tag == "-":
                    cur.removed += 1
                    old_left -= 1
                elif tag in (" ", ""):  # some tools strip a blank context line's space
                    old_left -= 1
                    new_left -= 1
                elif tag == "\\":  # "\ No newline at end of file"
                    continue
                else:
                    raise InputError(
                        source, i + 1, "diff", f"a hunk line that is not context, + or -: {body[:60]!r}"
                    )
                if old_left < 0 or new_left < 0:
                    raise InputError(source, i + 1, "diff", "a hunk line past what its @@ header counts")
        elif cur is not None and cur.hunks and line[:1] in (" ", "+", "-"):
            raise InputError(source, i + 1, "diff", "a hunk longer than its @@ header says")
        elif cur is not None:
            if line.startswith("new file mode"):
                cur.new_file = True
            elif line.startswith("deleted file mode"):
                cur.deleted = True
            elif line.startswith("rename from "):
                cur.rename_from = unquote(line[len("rename from ") :])
            elif line.startswith("rename to "):
                cur.rename_to = unquote(line[len("rename to ") :])
            elif line.startswith("copy from "):
                cur.copy_from = unquote(line[len("copy from ") :])
            elif line.startswith("copy to "):
                cur.copy_to = unquote(line[len("copy to ") :])
            elif line.startswith(("Binary files ", "GIT binary patch")):
                cur.binary = True
        i += 1
    close()
    return Diff(tuple(files))
