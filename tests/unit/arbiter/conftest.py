"""What the constrained-decoding tests of the Judge share: SmolLM2's tokenizer and a real (tiny) Llama whose
head prefers given tokens whatever it reads."""

from __future__ import annotations

from typing import Any

import pytest
import torch


@pytest.fixture(scope="module")
def tok() -> Any:
    from transformers import AutoTokenizer

    from kimi_student.backends.embedded import smollm2_folder

    return AutoTokenizer.from_pretrained(smollm2_folder())


@pytest.fixture
def biased_llama(tok: Any) -> Any:
    """`biased_llama(prefers)`: a one-layer Llama over `tok`'s vocabulary whose logits are `prefers` (token ->
    bias) and 0 elsewhere, whatever it reads: what greedy decoding picks is known."""
    return lambda prefers: _biased_llama(tok, prefers)


def _biased_llama(tok: Any, prefers: dict[str, float]) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False, max_position_embeddings=1024,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    model.lm_head = torch.nn.Linear(16, len(tok), bias=True)
    torch.nn.init.zeros_(model.lm_head.weight)
    torch.nn.init.zeros_(model.lm_head.bias)
    with torch.no_grad():
        model.lm_head.bias[tok.convert_tokens_to_ids(list(prefers))] = torch.tensor(list(prefers.values()))
    return model
