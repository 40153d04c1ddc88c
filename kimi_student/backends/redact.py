"""Secrets never reach a file: every writer of text that came from a server (answers, error bodies) or
names one (teacher ids, endpoint URLs) passes it through `redact` first.

What is taken out:
- the values of the environment variables the project reads a key from (KEY_ENVS) and of any other one a
  run names (`--api-key-env`), and passwords from URLs given on the command line (`remember`);
- `Bearer <token>` (an Authorization header a server echoes);
- URL userinfo (`scheme://user:pass@host` keeps `scheme://[REDACTED]@host`).

Values shorter than MIN_SECRET_LEN are not searched for: a one-letter "key" would blank every such letter.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

KEY_ENVS = ("KIMI_STUDENT_API_KEY", "KIMI_API_KEY", "MOONSHOT_API_KEY", "OPENAI_API_KEY")
MASK = "[REDACTED]"
MIN_SECRET_LEN = 6

_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@\"'<>]+@")
_extra_envs: set[str] = set()
_extra_values: set[str] = set()


def remember(*, env: str | None = None, value: str | None = None) -> None:
    """Also redact the value of the variable `env` (a key named by --api-key-env), or `value` itself."""
    if env:
        _extra_envs.add(env)
    if value and len(value) >= MIN_SECRET_LEN:
        _extra_values.add(value)


def secrets() -> list[str]:
    """The values to take out, longest first (so a key that contains another goes whole)."""
    vals = {os.environ.get(e) or "" for e in (*KEY_ENVS, *_extra_envs)} | _extra_values
    return sorted((v for v in vals if len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` without keys, bearer tokens or URL credentials."""
    for s in secrets():
        if s in text:
            text = text.replace(s, MASK)
    if "://" in text:
        text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    return _BEARER.sub(lambda m: m.group(1) + MASK, text)


def public_url(url: str) -> str:
    """`url` without its userinfo (`http://u:p@h:1/v1` -> `http://h:1/v1`); its password is remembered so
    that a server echoing it is redacted too."""
    try:
        u = urlsplit(url)
        host = u.hostname or ""
        port = u.port
    except ValueError:
        return redact(url)
    if u.password:
        remember(value=u.password)
    if "@" not in u.netloc:
        return url
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit(
        (u.scheme, host + (f":{port}" if port is not None else ""), u.path, u.query, u.fragment)
    )
