"""Batched greedy decoding of an HF causal LM with its KV cache, the hf_local runner's decoder.

It computes what `model.generate(do_sample=False)` computes for the rows still decoding (same left padding,
position ids, 2-D attention mask, cache and `logits_to_keep=1`), with two savings that leave every row's
tokens unchanged: a row that has stopped leaves the batch (generate keeps computing finished rows, padded,
until the longest is done), and the stop on `</tool_call>` written over several tokens is a check of the
row's newest tokens instead of StopStringCriteria's tensors rebuilt over the whole vocabulary per call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from kimi_student.chat.template import StopRule


def left_padded(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of `prompts`, left padded: every row's next token is at the same column."""
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = torch.tensor(p)
        mask[r, width - len(p) :] = 1
    return ids, mask


def _keep_rows(cache: Any, rows: torch.Tensor) -> None:
    for layer in cache.layers:
        layer.batch_select_indices(rows)


Pick = Callable[[list[int], torch.Tensor], int]  # a row's tokens so far, its next-token logits -> the token


@torch.no_grad()
def greedy_decode(
    model: Any,
    prompts: list[list[int]],
    pad_id: int,
    stop: StopRule,
    max_new: int,
    pick: Sequence[Pick] | None = None,
) -> list[list[int]]:
    """The greedy tokens of each prompt (at most `max_new`, up to and including the stop). `pick`: one rule a
    prompt that chooses each token from the logits in place of their argmax (a constrained decoding)."""
    from transformers import DynamicCache

    ids, mask = left_padded(prompts, pad_id)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    attn: torch.Tensor | None = None if bool(mask.all()) else mask  # as generate: no padding, no mask
    cache = DynamicCache(config=model.config)
    out: list[list[int]] = [[] for _ in prompts]
    live = list(range(len(prompts)))  # the prompts whose rows are in the batch, in row order
    step_ids = ids
    last_only = {"logits_to_keep": 1} if model._supports_logits_to_keep() else {}  # as generate
    for _ in range(max_new):
        logits = model(
            input_ids=step_ids,
            attention_mask=attn,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            **last_only,
        ).logits
        last = logits[:, -1, :]
        if pick is None:
            nxt = last.argmax(-1)
        else:
            nxt = torch.tensor([pick[i](out[i], last[r]) for r, i in enumerate(live)])
        for i, t in zip(live, nxt.tolist(), strict=True):
            out[i].append(t)
        keep = [r for r, i in enumerate(live) if not stop.stops(out[i])]
        if not keep:
            break
        positions = positions[:, -1:] + 1
        if len(keep) < len(live):  # stopped rows leave the batch and its cache
            rows = torch.tensor(keep)
            _keep_rows(cache, rows)
            live, nxt, positions = [live[r] for r in keep], nxt[rows], positions[rows]
            attn = None if attn is None else attn[rows]
        step_ids = nxt[:, None]
        if attn is not None:
            attn = torch.cat([attn, attn.new_ones((len(live), 1))], dim=-1)
    return out
