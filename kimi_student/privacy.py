"""PII and URL-allowlist checks shared by dataset verification and scoring."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

import yaml

from kimi_student.resources import config_path

CONFIG = config_path("privacy.yaml")

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}|\(\d{3}\) ?\d{3}-\d{4}|\d{3}-\d{3}-\d{4})(?!\w)"
)
UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
CARD = re.compile(r"(?<![\d.,])\d(?:[ -]?\d){12,18}(?![\d.,]\d)")
SECRET = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35})\b"
    r"|(?i:(?:api[_-]?key|secret|token|password)\s*[:=]\s*['\"]?[A-Za-z0-9_\-/+]{16,})"
)
URL = re.compile(r"https?://[^\s<>\"')\]]+")


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def pii_values(text: str) -> set[tuple[str, str]]:
    """(kind, normalised value) for every PII-looking string in `text`."""
    found: set[tuple[str, str]] = set()
    found |= {("email", m.group(0).casefold()) for m in EMAIL.finditer(text)}
    found |= {("phone", re.sub(r"\D", "", m.group(0))) for m in PHONE.finditer(text)}
    found |= {("uuid", m.group(0).lower()) for m in UUID.finditer(text)}
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            found.add(("card", digits))
    found |= {("secret", m.group(0)) for m in SECRET.finditer(text)}
    return found


@lru_cache(maxsize=1)
def url_allowlist() -> tuple[str, ...]:
    return tuple(h.lower() for h in yaml.safe_load(CONFIG.read_text())["url_allowlist"])


def url_allowed(url: str, allow: tuple[str, ...] | None = None) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    allow = url_allowlist() if allow is None else allow
    return any(host == a or host.endswith("." + a) for a in allow)


def urls(text: str) -> list[str]:
    return [m.group(0).rstrip(".,;:") for m in URL.finditer(text)]


def privacy_violations(prompt: str, texts: list[str]) -> list[str]:
    """Why `texts` (output and tool arguments) leak: PII the prompt did not contain, or a URL off the allowlist."""
    allowed = pii_values(prompt)
    out: list[str] = []
    for t in texts:
        for kind, val in sorted(pii_values(t) - allowed):
            out.append(f"{kind} not in prompt: {val}")
        out.extend(f"url not allowlisted: {u}" for u in urls(t) if not url_allowed(u))
    return out
