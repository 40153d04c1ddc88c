"""hf_local: a transformers checkpoint folder, in process, batched greedy decoding (left padding)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kimi_student.backends.hf import load_causal_lm
from kimi_student.chat.template import ChatTokenizer
from kimi_student.chat.transcript import CALL_CLOSE
from kimi_student.errors import InputError
from kimi_student.eval.runners.tool_loop import Generation, Messages
from kimi_student.fingerprint import model_folder_sha256


def length_batches(lengths: list[int], size: int, slack: float = 1.25) -> list[list[int]]:
    """Positions of ascending `lengths` in batches of at most `size`, a batch closed before a prompt longer
    than `slack` x its first: left padding to one long prompt (a long-context item) would make every
    row of the batch pay its quadratic attention."""
    batches: list[list[int]] = []
    for j, n in enumerate(lengths):
        if not batches or len(batches[-1]) == size or n > slack * lengths[batches[-1][0]] + 16:
            batches.append([])
        batches[-1].append(j)
    return batches


class HFGenerator:
    def __init__(self, model: str | Path, max_new_tokens: int = 256, batch_size: int = 8):
        folder = Path(model)
        if not (folder / "config.json").is_file():
            raise InputError(folder, None, "model", "not an HF checkpoint folder (no config.json)")
        self.chat = ChatTokenizer(folder)
        self.model: Any = load_causal_lm(folder).eval()
        self.context = int(getattr(self.model.config, "max_position_embeddings", 1 << 30))
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.fingerprint = model_folder_sha256(folder)

    def generate(self, conversations: list[Messages]) -> list[Generation]:
        prompts = [self.chat.prompt_ids(c) for c in conversations]
        out: list[Generation | None] = [None] * len(prompts)
        # batches of similar length waste less padding; the order is fixed, so the run is deterministic
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        fits = [i for i in order if len(prompts[i]) < self.context]
        for i in order:
            if len(prompts[i]) >= self.context:
                out[i] = Generation("", "context")
        for batch in length_batches([len(prompts[i]) for i in fits], self.batch_size):
            rows = [fits[j] for j in batch]
            for i, g in zip(rows, self._batch([prompts[i] for i in rows]), strict=True):
                out[i] = g
        return [g for g in out if g is not None]

    def _batch(self, prompts: list[list[int]]) -> list[Generation]:
        import torch
        from transformers import GenerationConfig

        width = max(map(len, prompts))
        max_new = min(self.max_new_tokens, self.context - width)
        ids = torch.full((len(prompts), width), self.chat.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):  # left padding: every row's next token is at the same column
            ids[r, width - len(p) :] = torch.tensor(p)
            mask[r, width - len(p) :] = 1
        cfg = GenerationConfig(
            do_sample=False,
            max_new_tokens=max_new,
            eos_token_id=self.chat.stop_ids,
            pad_token_id=self.chat.pad_id,
            stop_strings=None if self.chat.close_id is not None else [CALL_CLOSE],
        )
        with torch.no_grad():
            seq = self.model.generate(
                input_ids=ids, attention_mask=mask, generation_config=cfg, tokenizer=self.chat.tok
            )
        gens = []
        for row in seq[:, width:].tolist():
            text, finish = self.chat.turn(row, hit_limit=max_new == self.max_new_tokens)
            gens.append(Generation(text, finish))
        return gens

    def close(self) -> None:
        self.model = None
