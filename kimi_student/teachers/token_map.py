"""Teacher token strings -> local token ids, for storing an HTTP teacher's top-k logprobs as ids.

Servers give a token as decoded text (llama.cpp: `" the"`, often with its UTF-8 `bytes`), while a
byte-level BPE vocabulary such as SmolLM2's stores the byte-level form (`"Ġthe"`: each byte written as
one printable character, GPT-2's table). A token is looked up by its bytes in that form first, then as
written (a server that sends vocabulary strings as they are); neither found gives -1.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def byte_chars() -> tuple[str, ...]:
    """The byte-level alphabet: byte b -> one character. Printable Latin-1 bytes stand for themselves;
    the others (controls, space, 0x7f-0xa0, 0xad) take the characters from U+0100 on, in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    kept = set(keep)
    table: dict[int, str] = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in kept:
            table[b] = chr(0x100 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


def byte_level(raw: bytes) -> str:
    chars = byte_chars()
    return "".join(chars[b] for b in raw)


def token_bytes(entry: dict[str, Any]) -> bytes | None:
    """A logprobs entry's bytes: its `bytes` list when it is one of byte values, else its `token` text
    in UTF-8 (None when neither is usable)."""
    raw = entry.get("bytes")
    if isinstance(raw, list) and raw and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw)
    token = entry.get("token")
    if isinstance(token, str):
        return token.encode("utf-8", "surrogatepass")
    return None


class TokenMap:
    """Looks server tokens up in a local vocabulary (token string -> id)."""

    def __init__(self, vocab: dict[str, int]):
        self.vocab = vocab

    def id(self, entry: dict[str, Any]) -> int:
        raw = token_bytes(entry)
        if raw is not None:
            found = self.vocab.get(byte_level(raw))
            if found is not None:
                return found
        token = entry.get("token")
        return self.vocab.get(token, -1) if isinstance(token, str) else -1
