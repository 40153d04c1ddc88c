"""hf_local's decoder (greedy_hf) against HF `generate`, the code path it replaced: the same greedy tokens in
fp32 on a real (random, tiny) Llama whose rows stop at different times, the same stop on a text written over
several tokens as StopStringCriteria; and the runner's --dtype, resolved and in the report header's facts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from kimi_student.chat.template import ChatTokenizer, StopRule
from kimi_student.chat.transcript import CALL_CLOSE
from kimi_student.errors import KimiStudentError
from kimi_student.eval.identity import RunnerFacts
from kimi_student.eval.runners.greedy_hf import greedy_decode, left_padded
from kimi_student.eval.runners.hf_local import resolve_dtype
from kimi_student.eval.runners.model import ModelRunner
from kimi_student.eval.runners.options import RunnerOptions
from kimi_student.tools.broker import ToolBroker
from tests.support import ks_here

MAX_NEW = 16
REQUESTS = (
    "a",
    "Find the weather in Paris tomorrow",
    "Hello there",
    "Compute 2+2 and say the answer in words",
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: this model's tiny products cost less than the threads' barriers, which on cores
    shared with other work made each decoding step ~100x slower (4 s instead of 0.04 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def chat() -> ChatTokenizer:
    from kimi_student.backends.embedded import smollm2_folder

    return ChatTokenizer(smollm2_folder())


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    """A random 2-layer Llama over SmolLM2's vocabulary, untied and widely initialised: varied tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        initializer_range=0.5,
        max_position_embeddings=512,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def prompts(chat: ChatTokenizer) -> list[list[int]]:
    return [chat.prompt_ids([{"role": "user", "content": r}]) for r in REQUESTS]


def generate(model: torch.nn.Module, prompts: list[list[int]], pad: int, **stops: object) -> list[list[int]]:
    """HF generate's greedy rows (left padded), the pad after a stop removed."""
    from transformers import GenerationConfig

    ids, mask = left_padded(prompts, pad)
    cfg = GenerationConfig(do_sample=False, max_new_tokens=MAX_NEW, pad_token_id=pad, **stops)
    with torch.no_grad():
        seq = model.generate(
            input_ids=ids, attention_mask=mask, generation_config=cfg, tokenizer=stops.get("tok")
        )
    rows = seq[:, ids.shape[1] :].tolist()
    return [r[: next((j for j in range(len(r), 0, -1) if r[j - 1] != pad), 0)] for r in rows]


@pytest.fixture(scope="module")
def free(tiny, chat, prompts) -> list[list[int]]:
    """generate's rows with no stop."""
    return generate(tiny, prompts, chat.pad_id)


def test_fp32_tokens_equal_generate_when_rows_stop_at_different_times(tiny, chat, prompts, free) -> None:
    assert all(len(r) == MAX_NEW for r in free)
    assert greedy_decode(tiny, prompts, chat.pad_id, StopRule([]), MAX_NEW) == free
    stop_ids = sorted({free[0][3], free[1][9]})  # row 0 stops at its 4th token, row 1 by its 10th
    want = generate(tiny, prompts, chat.pad_id, eos_token_id=stop_ids)
    got = greedy_decode(tiny, prompts, chat.pad_id, StopRule(stop_ids), MAX_NEW)
    assert got == want
    assert len(got[0]) <= 4 and len(got[1]) <= 10 and max(map(len, got)) == MAX_NEW  # others run on
    assert got[0][-1] in stop_ids and got[1][-1] in stop_ids


def test_a_pick_rule_chooses_each_token_of_its_own_row(tiny, chat, prompts, free) -> None:
    """`pick` (a constrained decoding: the Judge's copies) chooses its row's tokens from the logits after the
    row's own tokens so far; a row whose rule takes the argmax decodes as without rules, in the same batch."""
    seen: list[list[int]] = []

    def second(row: list[int], logits: torch.Tensor) -> int:
        seen.append(list(row))
        return int(logits.topk(2).indices[1])

    def argmax(row: list[int], logits: torch.Tensor) -> int:
        return int(logits.argmax())

    got = greedy_decode(tiny, prompts[:2], chat.pad_id, StopRule([]), MAX_NEW, [second, argmax])
    assert got[1] == free[1] and got[0] != free[0] and len(got[0]) == MAX_NEW
    assert seen == [got[0][:j] for j in range(MAX_NEW)]  # the row's tokens before each choice
    with torch.no_grad():  # each token was the second most likely after what came before it
        logits = tiny(input_ids=torch.tensor([prompts[0] + got[0]])).logits[0, len(prompts[0]) - 1 : -1]
    assert got[0] == logits.topk(2).indices[:, 1].tolist()


def test_stop_text_over_several_tokens_matches_stop_string_criteria(tiny, chat, prompts, free) -> None:
    text = chat.tok.decode(free[2][5:8])  # a text the model writes over three tokens in row 2
    want = generate(tiny, prompts, chat.pad_id, stop_strings=[text], tok=chat.tok)
    got = greedy_decode(tiny, prompts, chat.pad_id, StopRule([], text, chat.tok), MAX_NEW)
    assert got == want and len(got[2]) <= 8 < MAX_NEW and text in chat.tok.decode(got[2])


@pytest.mark.parametrize(
    "written",
    ['<tool_call>{"name": "a"}</tool_call>', "x</tool_call>\nmore", "</tool_call", "a > b </tool_call>"],
)
def test_call_close_stop_at_the_token_stop_string_criteria_stops_at(chat, written: str) -> None:
    from transformers.generation.stopping_criteria import StopStringCriteria

    ids = chat.tok.encode(written, add_special_tokens=False)
    hf = StopStringCriteria(chat.tok, [CALL_CLOSE])
    rule = StopRule([], CALL_CLOSE, chat.tok)
    want = [bool(hf(torch.tensor([ids[:j]]), torch.zeros(1))[0]) for j in range(1, len(ids) + 1)]
    assert [rule.stops(ids[:j]) for j in range(1, len(ids) + 1)] == want
    assert any(want) == (CALL_CLOSE in written)


def test_dtype_is_resolved_and_in_the_header_facts(toy_checkpoint: Path) -> None:
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_dtype("auto") == ("bf16" if native else "fp32")
    assert (resolve_dtype("fp32"), resolve_dtype("bf16")) == ("fp32", "bf16")
    for asked, dtype in (("auto", resolve_dtype("auto")), ("bf16", "bf16"), (None, "fp32")):
        options = RunnerOptions.from_dict({"model": str(toy_checkpoint), "dtype": asked})
        runner = ModelRunner("hf_local", options, ToolBroker({}))
        assert RunnerFacts.of(runner).decoding["dtype"] == dtype
        weights = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
        assert runner.generator.model.dtype == weights
        runner.close()
    with pytest.raises(KimiStudentError, match="--dtype 'fp16': use one of auto, fp32, bf16"):
        resolve_dtype("fp16")


def test_eval_refuses_an_unknown_dtype(toy_checkpoint: Path, small: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "r.jsonl", tmp_path / "r.json"
    args = ("--model", toy_checkpoint, "--in", small, "--out", out, "--report", report, "--dtype", "fp16")
    r = ks_here("eval", "--runner", "hf_local", *args)
    assert r.returncode == 2 and "--dtype 'fp16': use one of auto, fp32, bf16" in r.stderr
    assert not out.exists() and not report.exists()
