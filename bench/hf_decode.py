"""Speed of the hf_local runner's decoding on realistic tool-loop prompts, against the code path it replaced
(HF `generate` with StopStringCriteria), measured in the same run.

Prompts come from a held-out `contextual gen` set: each item's request alone (turn 1) and, where its gold
transcript starts with a call, the request + that call + the tool's response (turn 2), as the tool loop
feeds them (prompt wrapper `request`). The model is the embedded SmolLM2-135M (`--layers K` keeps its first
K layers: the Worker student's sizes; `--model DIR` a trained student, whose rows stop). Each path decodes every prompt in batches of `--batch-size`, sorted by
length as hf_local does; the rounds alternate the paths and the best round of each is kept (the machine may
be shared). fp32 outputs of the new path must equal the baseline's token for token (exit 1 otherwise).

    .venv/bin/python bench/hf_decode.py [--n 16] [--layers 30] [--max-new 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contextual_scale import machine_line  # noqa: E402

Decode = Callable[[list[list[int]]], list[list[int]]]


def tool_loop_prompts(n: int, seed: int) -> list[list[dict[str, str]]]:
    """Turn-1 and turn-2 conversations of `n` held-out items."""
    from kimi_student.data.contextual import generate
    from kimi_student.drafter.data import loop_prompts

    return loop_prompts(generate(n, seed, "heldout")[1])


def baseline_decode(gen: Any, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """Today's hf_local before this change: `generate` with StopStringCriteria, finished rows padded."""
    import torch
    from transformers import GenerationConfig

    from kimi_student.chat.transcript import CALL_CLOSE
    from kimi_student.eval.runners.greedy_hf import left_padded

    ids, mask = left_padded(prompts, gen.chat.pad_id)
    cfg = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new,
        eos_token_id=gen.chat.stop_ids,
        pad_token_id=gen.chat.pad_id,
        stop_strings=None if gen.chat.close_id is not None else [CALL_CLOSE],
    )
    with torch.no_grad():
        seq = gen.model.generate(
            input_ids=ids, attention_mask=mask, generation_config=cfg, tokenizer=gen.chat.tok
        )
    rows = []
    for row in seq[:, ids.shape[1] :].tolist():  # up to the stop: what the new path returns
        cut = next((j + 1 for j, t in enumerate(row) if gen.stop.stops(row[: j + 1])), len(row))
        rows.append(row[:cut])
    return rows


def batched(decode: Decode, prompts: list[list[int]], size: int) -> tuple[list[list[int]], float]:
    """Every prompt's tokens, decoded in hf_local's length-sorted batches, and the seconds it took."""
    from kimi_student.eval.runners.hf_local import length_batches

    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    out: list[list[int]] = [[] for _ in prompts]
    t = time.perf_counter()
    for batch in length_batches([len(prompts[i]) for i in order], size):
        rows = [order[j] for j in batch]
        for i, toks in zip(rows, decode([prompts[i] for i in rows]), strict=True):
            out[i] = toks
    return out, time.perf_counter() - t


def load(model: str | None, dtype: str, layers: int | None, max_new: int) -> Any:
    from kimi_student.backends.embedded import smollm2_folder
    from kimi_student.eval.runners.hf_local import HFGenerator

    gen = HFGenerator(model or smollm2_folder(), max_new, dtype=dtype)
    if (
        layers is not None
    ):  # the first K layers: a Worker-sized student (layer_subset keeps a spread; speed is alike)
        gen.model.model.layers = gen.model.model.layers[:layers]
        gen.model.config.num_hidden_layers = layers
    return gen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="held-out items (about 1.5 prompts each)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--model", default=None, help="a trained student's HF folder (its rows stop) instead of SmolLM2"
    )
    ap.add_argument("--layers", type=int, default=None, help="keep the first K of SmolLM2's 30 layers")
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from kimi_student.eval.runners.greedy_hf import greedy_decode

    convs = tool_loop_prompts(a.n, a.seed)
    fp32 = load(a.model, "fp32", a.layers, a.max_new)
    prompts = [fp32.chat.prompt_ids(c) for c in convs]
    lens = sorted(map(len, prompts))
    print(machine_line(f"torch threads: {torch.get_num_threads()}  "))
    print(
        f"model: {a.model or 'smollm2'} layers {len(fp32.model.model.layers)}  prompts {len(prompts)} "
        f"(tokens {lens[0]}-{lens[-1]}, median {lens[len(lens) // 2]})  max_new {a.max_new}  "
        f"batch {a.batch_size}  bf16 native: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}"
    )

    def new_path(gen: Any) -> Decode:
        return lambda ps: greedy_decode(gen.model, ps, gen.chat.pad_id, gen.stop, a.max_new)

    paths: dict[str, Decode] = {
        "baseline fp32 (generate)": lambda ps: baseline_decode(fp32, ps, a.max_new),
        "new fp32": new_path(fp32),
    }
    bf16 = load(a.model, "bf16", a.layers, a.max_new)
    paths["new bf16"] = new_path(bf16)
    best: dict[str, float] = {}
    outs: dict[str, list[list[int]]] = {}
    batched(paths["new fp32"], prompts[:2], 2)  # warm-up: first-call allocations
    for round_ in range(a.rounds):
        for name, decode in paths.items():
            outs[name], s = batched(decode, prompts, a.batch_size)
            best[name] = min(best.get(name, s), s)
            print(f"  round {round_ + 1}: {name} {s:.2f} s  load {os.getloadavg()[0]:.2f}", flush=True)
    tokens = sum(map(len, outs["new fp32"]))
    stopped = sum(len(r) < a.max_new for r in outs["new fp32"])
    base = best["baseline fp32 (generate)"]
    for name, s in best.items():
        n = sum(map(len, outs[name]))
        print(f"{name:26s} {s:7.2f} s  {n / s:7.1f} tokens/s  x{base / s:.2f} vs baseline")
    same = sum(x == y for x, y in zip(outs["new fp32"], outs["baseline fp32 (generate)"], strict=True))
    agree = sum(x == y for x, y in zip(outs["new bf16"], outs["new fp32"], strict=True))
    print(
        f"fp32 new == baseline: {same}/{len(prompts)} prompts ({tokens} tokens, {stopped} rows stopped early)"
    )
    print(f"bf16 == fp32 (information, not required): {agree}/{len(prompts)} prompts")
    return 0 if same == len(prompts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
