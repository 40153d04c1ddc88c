"""The stateful decoder with chunk functions (prefill and draft verification in one call, q_len > 1):
exported as one multifunction package, run in the MIL executor, decoding what the full-sequence package
decodes, reusing a conversation's cache across its turns and never another conversation's.

On the trained toy student of the demo (tiny vocabulary, so a package converts in seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kimi_student.export.greedy import DecodeStats, greedy_decode
from kimi_student.export.kv_decode import KVDecoder
from kimi_student.recipes import toy_data
from kimi_student.recipes.toy_run import ToyRun
from tests.support import ks_here, read_rows

pytestmark = [pytest.mark.slow]

CONTEXT, CHUNKS = 128, [4, 16]


@pytest.fixture(scope="module")
def exported(toy_run: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kv") / "coreml"
    ckpt = ToyRun.at(toy_run["out"]).checkpoint
    r = ks_here(
        "export", "coreml", "--model", ckpt, "--out", out, "--shapes", str(CONTEXT),
        "--chunks", ",".join(map(str, CHUNKS)), "--no-sequence",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


def _full(toy_run: dict) -> Path:
    """The full-sequence package of the same checkpoint (INT8, FP16): the toy run exported it."""
    return Path(toy_run["out"]) / "coreml" / f"T{CONTEXT}" / f"seq{CONTEXT}.mlpackage"


def _decoder(exported: Path) -> KVDecoder:
    from kimi_student.eval.runners.coreml import _kv_decoder

    return _kv_decoder(exported / f"decode{CONTEXT}.mlpackage", 0)


def _prompts(toy_run: dict, n: int) -> list[list[int]]:
    from kimi_student.chat.template import ChatTokenizer

    run = ToyRun.at(toy_run["out"])
    chat = ChatTokenizer(run.checkpoint)
    held = read_rows(run.heldout_jsonl)[1 : n + 1]  # after the header row
    return [
        chat.prompt_ids(toy_data.ToyItem(r["id"], r["scenario"], r["prompt"], r["call"]).messages)
        for r in held
    ]


def test_one_package_holds_every_query_length_with_shared_weights(toy_run: dict, exported: Path) -> None:
    from kimi_student.export.mil import MilProgram

    entry = json.loads((exported / "manifest.json").read_text())["packages"][-1]
    assert entry["kind"] == "decode" and entry["functions"] == {"main": 1, "chunk4": 4, "chunk16": 16}
    progs = MilProgram.load_all(exported / entry["name"])
    assert {n: p.input_shape("input_ids") for n, p in progs.items()} == {
        "chunk16": (1, 16), "chunk4": (1, 4), "main": (1, 1),
    }  # fmt: skip
    assert all(p.state_names == ["k_cache", "v_cache"] for p in progs.values())
    # the dequantized weights are one set of arrays, not one per function
    w = {n: p._weights for n, p in progs.items()}
    names = [k for k in w["main"] if w["main"][k][0].size > 4096]
    assert len(names) >= 10
    assert all(w["main"][k][0] is w["chunk16"][k][0] is w["chunk4"][k][0] for k in names)
    # and a package of three functions stores them once: far less than three single-function packages
    assert entry["size_bytes"] < 1.5 * sum(f.stat().st_size for f in _full(toy_run).rglob("*.bin"))


def test_chunked_prefill_and_verify_give_the_full_sequence_package_s_tokens(
    toy_run: dict, exported: Path
) -> None:
    """Every query length writes the cache as one-token decoding does; greedy through the stateful
    decoder (chunked prefill, drafts verified a chunk at a time) gives the full-sequence package's tokens."""
    from kimi_student.chat.template import ChatTokenizer, StopRule
    from kimi_student.export.greedy import NgramDrafter
    from kimi_student.export.mil import MilProgram

    full = MilProgram.load(_full(toy_run))
    prompts = _prompts(toy_run, 4)
    stops = ChatTokenizer(ToyRun.at(toy_run["out"]).checkpoint).stop_ids
    stop = StopRule(stops)
    wants = [greedy_decode(full, p, stops, 24) for p in prompts]
    oracle = NgramDrafter([p + w for p, w in zip(prompts, wants)], max_n=3, k=16)  # drafts the answer
    wrong = NgramDrafter([[(t + 1) % 1000 for t in p + w] for p, w in zip(prompts, wants)], max_n=1, k=16)
    for p, want in zip(prompts, wants):
        plain, fast, slow = DecodeStats(), DecodeStats(), DecodeStats()
        assert _decoder(exported).greedy(p, stop, 24, None, plain) == want
        assert _decoder(exported).greedy(p, stop, 24, oracle, fast) == want
        assert _decoder(exported).greedy(p, stop, 24, wrong, slow) == want
        # prefill: whole chunks of 16, then the rest in one call; then a call per token but the last
        prefill_calls = -(-len(p) // 16)
        assert plain.prefill_tokens == len(p) and plain.forwards == prefill_calls + len(want) - 1
        # drafts of up to 3 (the smallest chunk, 4, holds them and the pending token): up to 4 tokens a
        # call; the drafter looks in the sequence itself first, so not every draft is the answer
        assert fast.forwards - prefill_calls <= (len(want) - 1) / 2
        assert slow.forwards <= plain.forwards and fast.new_tokens == slow.new_tokens == len(want)
    # the cache one call of Q tokens writes equals Q one-token calls' (fp16 state, same values)
    dec = _decoder(exported)
    p = (prompts[0] + prompts[1])[:16]
    one, chunk = dec.programs[1].new_state(), dec.programs[16].new_state()
    for i, t in enumerate(p):
        dec.programs[1].predict(
            {"input_ids": np.array([[t]], np.int32), "position": np.array([i], np.int32)}, one
        )
    dec.programs[16].predict(
        {"input_ids": np.array([p], np.int32), "position": np.array([0], np.int32)}, chunk
    )
    for name in ("k_cache", "v_cache"):
        diff = np.abs(one[name][:, :, :16].astype(np.float32) - chunk[name][:, :, :16].astype(np.float32))
        assert diff.max() <= 2e-3 and np.abs(chunk[name][:, :, :16]).max() > 0.1


def test_a_conversation_reuses_its_cache_and_no_other_does(toy_run: dict, exported: Path) -> None:
    from kimi_student.chat.template import StopRule

    stop = StopRule([2])
    a, b = _prompts(toy_run, 2)
    dec = _decoder(exported)
    first = DecodeStats()
    new = dec.greedy(a, stop, 12, None, first)
    assert first.cached_tokens == 0 and first.prefill_tokens == len(a)
    # the next turn: the conversation so far plus a tool response
    turn2 = a + new + [5, 6, 7, 8, 9]
    again = DecodeStats()
    got = dec.greedy(turn2, stop, 12, None, again)
    assert again.cached_tokens == len(a) + len(new) - 1  # all but the last new token were fed back
    assert again.prefill_tokens == len(turn2) - again.cached_tokens
    assert got == _decoder(exported).greedy(turn2, stop, 12)  # as from an empty cache
    # another conversation shares the chat template's opening, but not the first prompt: nothing reused
    other = DecodeStats()
    dec.greedy(b, stop, 12, None, other)
    assert other.cached_tokens == 0
    # order does not matter: b then a's second turn, in a decoder that saw a's first turn after b
    dec2 = _decoder(exported)
    dec2.greedy(b, stop, 12)
    assert dec2.greedy(a, stop, 12) == new


def test_a_dropped_session_only_costs_time(toy_run: dict, exported: Path) -> None:
    """With one cache kept, a second conversation evicts the first: its next turn starts from position 0
    and decodes what it would have with its cache."""
    from kimi_student.chat.template import StopRule
    from kimi_student.eval.runners.coreml import _kv_decoder

    stop = StopRule([2])
    a, b = _prompts(toy_run, 2)
    dec = _kv_decoder(exported / f"decode{CONTEXT}.mlpackage", 0, sessions=1)
    turn2 = a + dec.greedy(a, stop, 12) + [5, 6, 7]
    dec.greedy(b, stop, 12)
    stats = DecodeStats()
    assert dec.greedy(turn2, stop, 12, None, stats) == _decoder(exported).greedy(turn2, stop, 12)
    assert stats.cached_tokens == 0 and len(dec.sessions) == 1


def test_the_context_bounds_every_call(toy_run: dict, exported: Path) -> None:
    """A prompt near the end of the context is prefilled in chunks that fit, decoding stops at the
    context, and a prompt that fills it is refused."""
    from kimi_student.chat.template import StopRule
    from kimi_student.export.errors import MilExecError

    p = (_prompts(toy_run, 1)[0] * 20)[: CONTEXT - 3]
    stats = DecodeStats()
    new = _decoder(exported).greedy(p, StopRule([]), 50, None, stats)
    assert len(p) + len(new) == CONTEXT and stats.truncated == 1
    with pytest.raises(MilExecError, match="does not fit"):
        _decoder(exported).greedy(p * 2, StopRule([]), 5)


def test_continuation_logits_are_the_full_sequence_package_s(toy_run: dict, exported: Path) -> None:
    """Scoring continuations after a prompt (the Judge's status probabilities): the prompt is cached once,
    each continuation is one call from there, and its rows are the logits the full-sequence package gives at
    the same positions; a continuation written over by the next leaves no trace."""
    from kimi_student.eval.runners.coreml import token_logprobs
    from kimi_student.export.errors import MilExecError
    from kimi_student.export.mil import MilProgram

    full = MilProgram.load(_full(toy_run))
    p = _prompts(toy_run, 1)[0]
    conts = [[5, 6, 7], [9], [5, 6, 8, 10, 11], []]
    dec, stats = _decoder(exported), DecodeStats()
    got = dec.continuation_logits(p, conts, stats)
    assert stats.prefill_tokens == len(p) - 1 and stats.forwards == -(-(len(p) - 1) // 16) + len(conts)
    for c, rows in zip(conts, got, strict=True):
        want = np.asarray(
            full.predict({"input_ids": np.array([p + c + [0] * (CONTEXT - len(p) - len(c))], np.int32)})[
                "logits"
            ]
        )[0]
        assert rows.shape == (len(c), want.shape[-1])
        assert np.abs(rows - want[len(p) - 1 : len(p) - 1 + len(c)]).max(initial=0.0) <= 0.05
        lp = token_logprobs(rows, c)
        assert all(x < 0 for x in lp) and len(lp) == len(c)
    # in reverse order the same rows: each continuation starts from the prompt's cache, not the last one's
    again = dec.continuation_logits(p, conts[::-1])
    assert all(np.array_equal(x, y) for x, y in zip(got, again[::-1], strict=True))
    with pytest.raises(MilExecError, match="exceeds"):
        dec.continuation_logits(p, [[1] * (CONTEXT - len(p) + 2)])
