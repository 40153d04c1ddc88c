"""The tokens the scorer needs: those of the final answer, tokenized from a line start before it.

Token offsets matter to scoring only inside integration spans (strict matching, token alignment), which
all lie in the final answer: a small part of a transcript whose tool calls and responses come first. So
an output is tokenized from `answer_cut`, the start of a line at or before its first `Integration:`,
and the tokens' offsets are shifted back to positions in the whole text.

That gives exactly the tokens the whole text has from the cut on, where the tokenizer starts afresh at
the cut (`fresh_at_line_starts`): no normalizer; a byte-level pre-tokenizer, either GPT-2's regex
(SmolLM2's, `train_bpe`'s default) or `train_bpe`'s `space_after` split. In both, each piece is a run of
whitespace or letters, digits or other characters that may begin with (GPT-2) or end with (space_after)
one space (U+0020), so no piece holds a newline and the non-blank character right after it: a piece
always starts at a cut placed there; the regexes look ahead, never behind, so the pieces from the cut on
are the same with or without the text before; and the BPE model works inside pieces. Added tokens are
matched first, over the whole text: none may hold a newline or strip the blanks before it. Any other
tokenizer, and an output with no such line start before its first span, is tokenized whole.
tests/unit/eval/score/test_tokens.py checks the tokens are the same both ways on real outputs.
"""

from __future__ import annotations

import json
from typing import Any

from tokenizers import Tokenizer

from kimi_student.chat.transcript import INTEGRATION
from kimi_student.tokenizer import TokenizerHandle

Encoded = tuple[list[int], list[tuple[int, int]]]
GPT2_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
SPACE_AFTER_SPLIT = r"\p{L}+ ?|\p{N}+ ?|[^\s\p{L}\p{N}]+ ?|\s+"  # train_bpe(space_after=True)
_POST_PROCESSORS = (None, "TemplateProcessing", "ByteLevel")  # none adds tokens without special tokens
_FRESH = "eval.score.tokens.fresh_at_line_starts"  # TokenizerHandle._cache key


def answer_cut(text: str) -> int:
    """Where to start tokenizing `text`: the last start of a line (after a newline, at a printable
    ASCII character other than a space) at or before the first `Integration:` (every integration span
    begins with one), len(text) where there is none (no token is needed), 0 where no line start fits
    (the whole text)."""
    pos = text.find(INTEGRATION)
    if pos < 0:
        return len(text)
    while True:
        nl = text.rfind("\n", 0, pos)
        if nl < 0:
            return 0
        if "!" <= text[nl + 1] <= "~":
            return nl + 1
        pos = nl


def fresh_at_line_starts(tokenizer: TokenizerHandle) -> bool:
    """Whether `tokenizer` tokenizes the text from a line start (as answer_cut places it) the same with or
    without the text before it (module docstring). Worked out once per tokenizer."""
    known = tokenizer._cache.get(_FRESH)
    if known is None:
        known = tokenizer._cache[_FRESH] = _fresh(_spec(tokenizer.tok))
    return bool(known)


def _spec(tok: Tokenizer) -> dict[str, Any]:
    """The parts of the tokenizer.json that decide, without its vocabulary (to_str() takes 70 ms)."""

    def part(p: Any) -> Any:
        return None if p is None else json.loads(p.__getstate__())

    return {
        "normalizer": part(tok.normalizer),
        "pre_tokenizer": part(tok.pre_tokenizer),
        "post_processor": part(tok.post_processor),
        "model": {"type": type(tok.model).__name__, "dropout": getattr(tok.model, "dropout", None)},
        "truncation": tok.truncation,
        "padding": tok.padding,
        "added_tokens": [
            {"content": a.content, "lstrip": a.lstrip} for a in tok.get_added_tokens_decoder().values()
        ],
    }


def _fresh(spec: dict[str, Any]) -> bool:
    pre = spec.get("pre_tokenizer") or {}
    if _sub(pre, GPT2_BYTE_LEVEL):
        pre_ok = True
    else:
        pieces = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
        pre_ok = (
            isinstance(pieces, list)
            and len(pieces) == 2
            and _sub(pieces[0], {"type": "Split", "pattern": {"Regex": SPACE_AFTER_SPLIT}, "invert": False})
            and pieces[0].get("behavior") == "Isolated"
            and _sub(pieces[1], {**GPT2_BYTE_LEVEL, "use_regex": False})
        )
    post = (spec.get("post_processor") or {}).get("type")
    added = spec.get("added_tokens") or []
    return (
        pre_ok
        and spec.get("normalizer") is None
        and spec.get("truncation") is None
        and spec.get("padding") is None
        and (spec.get("model") or {}).get("type") == "BPE"
        and not (spec.get("model") or {}).get("dropout")
        and post in _POST_PROCESSORS
        and all("\n" not in a.get("content", "\n") and not a.get("lstrip") for a in added)
    )


def _sub(d: Any, want: dict[str, Any]) -> bool:
    return isinstance(d, dict) and all(d.get(k) == v for k, v in want.items())


def encode_answers(tokenizer: TokenizerHandle, texts: list[str]) -> list[Encoded]:
    """Token ids and character offsets (positions in the whole text) of each text's tokens from its
    answer_cut on: every token an integration span can overlap. All of them where the tokenizer is not
    known to start afresh at a line start."""
    if not fresh_at_line_starts(tokenizer):
        return tokenizer.encode_offsets(texts)
    cuts = [answer_cut(t) for t in texts]
    encs = tokenizer.encode_offsets([t[c:] for t, c in zip(texts, cuts)])
    return [
        (ids, offsets if not c else [(s + c, e + c) for s, e in offsets])
        for (ids, offsets), c in zip(encs, cuts)
    ]
