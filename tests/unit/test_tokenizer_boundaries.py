"""`boundaries` and `token_range` against the plain per-character implementations they replaced (kept here
only, as the reference), on random Unicode text with multi-byte characters, for the embedded SmolLM2
tokenizer and a small trained byte-level BPE (both pre-tokenizer styles), and on arbitrary offsets."""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from pathlib import Path

import pytest

from kimi_student.tokenizer import TokenizerHandle, boundaries, load_tokenizer, token_range, train_bpe


def ref_boundaries(text: str, offsets: list[tuple[int, int]]) -> set[int]:
    out: set[int] = set()
    for s, e in offsets:
        out.add(s)
        out.add(e)
        piece = text[s:e]
        if not any(c.isalnum() for c in piece):
            out.update(range(s, e))
            continue
        out.add(s + len(piece) - len(piece.lstrip()))
        out.add(e - (len(piece) - len(piece.rstrip())))
    return out


def ref_token_range(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    ends = [e for _, e in offsets]
    starts = [s for s, _ in offsets]
    first = bisect_right(ends, start)
    last = bisect_left(starts, end)
    return first, max(first, last)


# Letters and digits of several scripts (1 to 4 UTF-8 bytes), every kind of blank, punctuation, symbols,
# combining marks, emoji and the protocol's own markup.
ALPHABET = (
    list("abcXYZ0189_ .,;:!?'\"()[]{}<>-+*/=#@$%&|\\`~\n\t\r")
    + list("éüßñçœÆØÅ½²³٣०")  # Latin-1 letters, superscripts and other-script digits (isalnum, not ASCII)
    + list("αβΩжЯ中文字日本한국אבعربي")
    + list(
        "\u00a0\u2003\u2009\u3000\u200b\u2028\x0b\x0c\x1c\x85"
    )  # blanks Python calls space (and one it does not)
    + list("\u0301\u0308—–…«»€£¥©®™°§¶•")
    + ["😀", "🚀", "👍🏽", "𝔘", "𐍈", "\U0001f9ea"]
    + ["<tool_call>", "</tool_call>", "Integration: ", '{"name": "', '"}', "  ", "\n\n"]
)


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 120)))


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> list[TokenizerHandle]:
    rng = random.Random(7)
    corpus = [random_text(rng) for _ in range(400)]
    d: Path = tmp_path_factory.mktemp("bpe")
    plain = train_bpe(corpus, d / "plain.json", 400)
    after = train_bpe(corpus, d / "after.json", 400, space_after=True)
    return [load_tokenizer("smollm2"), plain, after]


def test_boundaries_and_token_range_match_the_reference_on_random_unicode(tokenizers):
    rng = random.Random(11)
    texts = [random_text(rng) for _ in range(600)]
    texts += texts[::7]  # repeats: encoded once, given to each
    for tok in tokenizers:
        encs = tok.encode_offsets(texts)
        fast = tok.offsets_batch(texts)
        for text, (_ids, offsets), offs2 in zip(texts, encs, fast):
            assert offs2 == offsets
            assert boundaries(text, offsets) == ref_boundaries(text, offsets), (tok.name, text)
            for _ in range(6):
                a = rng.randint(0, len(text))
                b = rng.randint(a, len(text))
                assert token_range(offsets, a, b) == ref_token_range(offsets, a, b)
        assert tok.ids_batch(texts) == [ids for ids, _ in encs]


def test_boundaries_match_the_reference_on_arbitrary_offsets():
    """Offsets no tokenizer would give (overlapping, unsorted, empty, lone surrogates in the text): the
    two implementations still agree, since they are the same function."""
    rng = random.Random(5)
    for _ in range(2000):
        text = random_text(rng) + rng.choice(["", "\ud800", "x\udfff "])
        offsets = []
        for _ in range(rng.randint(0, 30)):
            s = rng.randint(0, len(text))
            offsets.append((s, rng.randint(s, len(text))))
        assert boundaries(text, offsets) == ref_boundaries(text, offsets)
        if rng.random() < 0.5:
            offsets.sort()
        a = rng.randint(0, len(text))
        b = rng.randint(a, len(text))
        assert token_range(offsets, a, b) == ref_token_range(offsets, a, b)


def test_real_transcripts_match_the_reference():
    from kimi_student.data.contextual import generate

    _, items, _ = generate(300, 3)
    tok = load_tokenizer("smollm2")
    texts = [it["teacher_text"] for it in items] + [it["prompt"] for it in items]
    for text, (_, offsets) in zip(texts, tok.encode_offsets(texts)):
        assert boundaries(text, offsets) == ref_boundaries(text, offsets)
