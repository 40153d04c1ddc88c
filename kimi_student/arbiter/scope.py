"""Which paths a working spec's scope admits. Pure.

CAWS's conventions: an entry without glob characters is a folder or file and admits itself and everything
under it, boundary-safe (`src` admits `src/a.py`, not `srcx/a.py`); an entry with glob characters is a glob
in which `*` and `?` stay within one path segment, `**` crosses segments, `[...]` is a character class and
`{a,b}` an alternative, and dot-files match like any other name.
"""

from __future__ import annotations

import functools
import re

_GLOB_CHARS = re.compile(r"[*?\[\]{}]")


def normalize(path: str) -> str:
    """`./src//a.py/` -> `src/a.py`: how a path is compared."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


@functools.lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i, n, braces = [], 0, len(pattern), 0
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "{":
            out.append("(?:")
            braces += 1
        elif c == "}" and braces:
            out.append(")")
            braces -= 1
        elif c == "," and braces:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    if braces:
        raise ValueError(f"unclosed '{{' in scope pattern {pattern!r}")
    return re.compile("".join(out) + r"\Z")


def matching_entry(path: str, entries: tuple[str, ...] | list[str]) -> str | None:
    """The first entry that admits `path`, or None."""
    target = normalize(path)
    for entry in entries:
        if _GLOB_CHARS.search(entry):
            glob = entry.strip()
            if _glob_regex(glob[2:] if glob.startswith("./") else glob).match(target):
                return entry
            continue
        prefix = normalize(entry)
        if prefix and (target == prefix or target.startswith(prefix + "/")):
            return entry
    return None
