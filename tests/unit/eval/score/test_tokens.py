"""The scorer tokenizes an output from a line start before its first integration span (tokens.py): the
tokens from that cut on must be exactly those of the whole text, for the embedded SmolLM2 tokenizer and
both styles of trained byte-level BPE, on real outputs (gold transcripts and perturbed ones) and on
random Unicode text; the scores must not change; any other tokenizer is tokenized whole."""

from __future__ import annotations

import json
import random
import re
import unicodedata
from pathlib import Path

import pytest

from kimi_student.data.contextual import generate
from kimi_student.eval.score.item import score_item
from kimi_student.eval.score.tokens import answer_cut, encode_answers, fresh_at_line_starts
from kimi_student.tokenizer import TokenizerHandle, load_tokenizer, train_bpe
from kimi_student.tools.broker import ToolBroker
from tests.unit.test_tokenizer_boundaries import random_text


def perturbed(text: str, k: int) -> str:
    """A gold transcript as a model may get it wrong: other blanks, indentation, other scripts."""
    return [
        text,
        text.replace("\nIntegration:", "\n  Integration:"),
        text.replace("\nIntegration:", "\n\u00a0Integration:", 1),
        text.replace("\nIntegration:", " Ok. Integration:", 1),
        text.replace("\n", "\n\n \n", 2) + "\n\tIntegration: tab\n",
        re.sub(r"[aeiou]", lambda m: unicodedata.normalize("NFC", m.group() + "\u0301"), text),
        text.replace("Integration: ", "Integration: 中文 1\u202f234,5 😀 ", 2),
        "Integration: " + text,
        text.replace("\n", " "),
    ][k % 9]


@pytest.fixture(scope="module")
def world():
    _, items, fixtures = generate(240, 5)
    return items, fixtures


@pytest.fixture(scope="module")
def outputs(world) -> list[str]:
    items, _ = world
    rng = random.Random(3)
    texts = [perturbed(it["teacher_text"], k) for k, it in enumerate(items)] + [
        it["teacher_text"] for it in items
    ]
    heads = ["I", "'s", "x", "1", "-", "<", "(", " ", "  x", "\t", "\u00a0", "\u00e9", "\n", "\r"]
    for _ in range(400):  # random text: a line start of any kind before a span, at a line's start or not
        head = rng.choice(heads)
        span = rng.choice(["\n", ". ", ""]) + "Integration: "
        texts.append(random_text(rng) + "\n" + head + random_text(rng) + span + random_text(rng))
    return texts


@pytest.fixture(scope="module")
def tokenizers(world, tmp_path_factory: pytest.TempPathFactory) -> list[TokenizerHandle]:
    items, _ = world
    rng = random.Random(7)
    corpus = [t for it in items[:120] for t in (it["prompt"], it["teacher_text"])] + [
        random_text(rng) for _ in range(200)
    ]
    d: Path = tmp_path_factory.mktemp("bpe")
    return [
        load_tokenizer("smollm2"),
        train_bpe(corpus, d / "plain.json", 500),
        train_bpe(corpus, d / "after.json", 500, space_after=True),
    ]


def test_tokens_from_the_cut_are_the_whole_texts_tokens(tokenizers, outputs, world):
    items, _ = world
    for tok in tokenizers:
        assert fresh_at_line_starts(tok), tok.name
        whole = tok.encode_offsets(outputs)
        for text, (ids, offs), (tids, toffs) in zip(outputs, whole, encode_answers(tok, outputs)):
            cut = answer_cut(text)
            assert not any(s < cut < e for s, e in offs), (tok.name, text)  # no token straddles the cut
            kept = [(i, o) for i, o in zip(ids, offs) if o[0] >= cut]
            assert list(zip(tids, toffs)) == kept, (tok.name, text)
        gold_cuts = [answer_cut(it["teacher_text"]) for it in items]
        cut_in_text = sum(0 < c < len(it["teacher_text"]) for c, it in zip(gold_cuts, items))
        assert cut_in_text >= 0.8 * len(items)  # the short path is the usual one on gold outputs


def test_scores_are_the_same_with_the_answers_tokens(tokenizers, outputs, world):
    items, fixtures = world
    broker = ToolBroker(fixtures)
    pairs = [(items[k % len(items)], out) for k, out in enumerate(outputs)][::2]  # every kind, half the count
    texts = [o for _, o in pairs]
    for tok in tokenizers:
        whole, tail = tok.encode_offsets(texts), encode_answers(tok, texts)
        for (item, out), w, t in zip(pairs, whole, tail):
            a = score_item(item, out, w, tok, broker).to_json()
            b = score_item(item, out, t, tok, broker).to_json()
            assert a == b, (tok.name, out)


CUT_CASES = [
    pytest.param("no span at all\nhere", None, id="no-span-no-tokens"),
    pytest.param("Integration: at the start", 0, id="span-first-whole-text"),
    pytest.param("call\nIntegration: x", 5, id="line-start"),
    pytest.param("call\nI read it. Integration: x", 5, id="mid-line-span-its-line-start"),
    pytest.param("a\nb\n  x. Integration: x", 2, id="indented-line-the-line-before"),
    pytest.param("  \n x. Integration: x", 0, id="no-line-start-fits-whole-text"),
    pytest.param("z\na\n\u00e9. Integration: x", 2, id="non-ascii-line-start-skipped"),
]


@pytest.mark.parametrize(("text", "cut"), CUT_CASES)
def test_answer_cut(text, cut):
    assert answer_cut(text) == (len(text) if cut is None else cut)


def _variant(tok: TokenizerHandle, path: Path, change) -> TokenizerHandle:
    spec = json.loads(tok.tok.to_str())
    change(spec)
    path.write_text(json.dumps(spec), encoding="utf-8")
    return load_tokenizer(str(path))


def test_other_tokenizers_are_tokenized_whole(tokenizers, outputs, tmp_path):
    plain, after = tokenizers[1], tokenizers[2]

    def lstrip_token(spec):
        spec["added_tokens"][1]["lstrip"] = True

    changes = [
        (plain, lambda s: s["pre_tokenizer"].update(add_prefix_space=True)),
        (plain, lambda s: s.update(normalizer={"type": "NFC"})),
        (
            plain,
            lambda s: s.update(
                truncation={"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
            ),
        ),
        (plain, lstrip_token),
        (after, lambda s: s["pre_tokenizer"]["pretokenizers"][0].update(pattern={"Regex": r"\s+|\S+"})),
        (
            after,
            lambda s: s["pre_tokenizer"]["pretokenizers"][1].update(use_regex=True, add_prefix_space=True),
        ),
    ]
    for k, (base, change) in enumerate(changes):
        tok = _variant(base, tmp_path / f"v{k}.json", change)
        assert not fresh_at_line_starts(tok), k
        assert encode_answers(tok, outputs[:50]) == tok.encode_offsets(outputs[:50])
