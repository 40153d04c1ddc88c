"""Every layer's hidden states at the labelled positions of a set of examples, cached on disk.

One forward per example (`output_hidden_states`: the embeddings and each layer's output, L + 1 states),
kept at the positions `labels.probe_rows` names, FP16. The cache file is named by what the states depend
on (the model's weights, the examples' tokens and labels, the dtype), written whole (temp file, rename), so
a rerun reads it instead of running the model again and an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kimi_student.fingerprint import sha256_json
from kimi_student.jsonl import atomic_writer
from kimi_student.probes.labels import probe_rows
from kimi_student.train.examples import Example


@dataclass
class Features:
    states: np.ndarray  # (n, L + 1, H) float16: the state at each labelled position, every layer
    step: np.ndarray  # (n,) int
    tool: np.ndarray  # (n,) int, NO_TOOL outside calls
    item: np.ndarray  # (n,) int: the example each row comes from (train/held-out split by example)


def _key(weights: str, examples: list[Example], tools: list[str], dtype: str) -> str:
    labels = [[e.id, e.input_ids.tolist(), e.segments, e.spans, e.calls] for e in examples]
    return sha256_json({"weights": weights, "labels": labels, "tools": tools, "dtype": dtype})


def hidden_features(
    model_folder: Path,
    weights: str,
    examples: list[Example],
    tools: list[str],
    cache: Path,
    dtype: str,
    progress: bool,
) -> Features:
    """The labelled rows of `examples` with every layer's state (the model's `weights_sha256` is given: the
    report names it too), from `cache` when it holds them."""
    path = cache / f"features-{_key(weights, examples, tools, dtype)[:16]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return Features(z["states"], z["step"], z["tool"], z["item"])
    from tqdm import tqdm

    from kimi_student.backends.hf import load_causal_lm

    model = load_causal_lm(model_folder).eval()
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    states, steps, tools_, items = [], [], [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch_dtype, enabled=torch_dtype != torch.float32):
        for i, ex in enumerate(tqdm(examples, desc=f"states {model_folder.name}", disable=not progress)):
            rows = probe_rows(ex, tools)
            # the decoder alone: its states are all a probe reads (the LM head over the vocabulary is not)
            out = model.base_model(torch.from_numpy(ex.input_ids)[None], output_hidden_states=True)
            h = torch.stack([s[0, torch.from_numpy(rows.positions)] for s in out.hidden_states], dim=1)
            states.append(h.float().numpy().astype(np.float16))
            steps.append(rows.step)
            tools_.append(rows.tool)
            items.append(np.full(len(rows.step), i))
    f = Features(np.concatenate(states), np.concatenate(steps), np.concatenate(tools_), np.concatenate(items))
    with atomic_writer(path, "wb") as fh:
        np.savez(fh, states=f.states, step=f.step, tool=f.tool, item=f.item)
    return f
