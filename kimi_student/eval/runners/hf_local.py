"""hf_local: a transformers checkpoint folder, in process, batched greedy decoding (left padding) in the
dtype the runner option asks for (greedy_hf.py decodes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kimi_student.backends.hf import cpu_has_bf16, load_causal_lm
from kimi_student.chat.template import ChatTokenizer
from kimi_student.errors import InputError, KimiStudentError
from kimi_student.eval.runners.greedy_hf import Pick, greedy_decode
from kimi_student.eval.runners.options import DRAFT_CONFIDENCE
from kimi_student.eval.runners.speculative_hf import (
    Drafter,
    FeatureDraft,
    ModelDrafter,
    PromptLookup,
    SpecStats,
    speculative_decode,
)
from kimi_student.eval.runners.tool_loop import Generation, Messages
from kimi_student.fingerprint import model_folder_sha256, weights_sha256
from kimi_student.models import feature_drafter


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


DTYPES = ("auto", "fp32", "bf16")


def resolve_dtype(dtype: str) -> str:
    """fp32 or bf16: `auto` is bf16 where the CPU runs it natively (`cpu_has_bf16`), else fp32."""
    if dtype not in DTYPES:
        raise KimiStudentError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return dtype
    return "bf16" if cpu_has_bf16() else "fp32"


PROMPT_LOOKUP = "prompt-lookup"


class HFGenerator:
    def __init__(
        self,
        model: str | Path,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        dtype: str = "fp32",
        draft_model: str | None = None,
        draft_k: int = 3,
        draft_confidence: float = DRAFT_CONFIDENCE,
    ):
        self.dtype = resolve_dtype(dtype)  # a bad name fails before the model loads
        folder = Path(model)
        if not (folder / "config.json").is_file():
            raise InputError(folder, None, "model", "not an HF checkpoint folder (no config.json)")
        if draft_model and batch_size != 1:
            raise KimiStudentError(
                "--draft-model decodes one conversation at a time: pass --batch-size 1 (a run without the "
                "drafter at --batch-size 1 gives the same results and report)"
            )
        if not 0 <= draft_confidence < 1:
            raise KimiStudentError(f"--draft-confidence {draft_confidence}: a chance, at least 0 and under 1")
        draft_folder = Path(draft_model) if draft_model and draft_model != PROMPT_LOOKUP else None
        if draft_folder and not (draft_folder / "config.json").is_file():
            raise InputError(
                draft_model, None, "draft_model", f"not an HF checkpoint folder or {PROMPT_LOOKUP}"
            )
        self.chat = ChatTokenizer(folder)
        features = draft_folder is not None and feature_drafter.is_feature_drafter(draft_folder)
        if features and feature_drafter.target_sha256(draft_folder) != weights_sha256(folder):
            raise InputError(draft_model, None, "draft_model", "a feature drafter trained for another model")
        if (
            draft_folder
            and not features
            and ChatTokenizer(draft_folder).tok.get_vocab() != self.chat.tok.get_vocab()
        ):
            raise InputError(draft_model, None, "draft_model", "its tokenizer is not the model's")
        self.model: Any = self._load(folder)  # the checks above come before any weights load
        self.drafter: Drafter | None = None
        if draft_folder and features:
            self.drafter = FeatureDraft(feature_drafter.load(draft_folder, self.model), draft_confidence)
        elif draft_folder:
            self.drafter = ModelDrafter(self._load(draft_folder))
        elif draft_model == PROMPT_LOOKUP:
            self.drafter = PromptLookup()
        self.draft_k = draft_k
        # a rule a prompt for constrained greedy decoding (the Judge's copies: arbiter/copying.py); None: argmax
        self.constrain: Callable[[list[int]], Pick] | None = None
        self.spec = SpecStats()  # what the drafter did, over every conversation
        self.stop = self.chat.stop_rule()
        self.context = int(getattr(self.model.config, "max_position_embeddings", 1 << 30))
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.fingerprint = model_folder_sha256(folder)
        self._prefix: tuple[list[int], Any] | None = None  # next_logits' last ids and their KV cache

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

    def _load(self, folder: Path) -> Any:
        model = load_causal_lm(folder).eval()
        if self.dtype == "bf16":
            import torch

            model = model.to(torch.bfloat16)
        return model

    def _batch(self, prompts: list[list[int]]) -> list[Generation]:
        max_new = min(self.max_new_tokens, self.context - max(map(len, prompts)))
        gens = []
        if self.drafter is not None:
            if self.constrain is not None:
                raise KimiStudentError("constrained decoding is greedy's: it runs without a drafter")
            rows = []
            for p in prompts:
                row, stats = speculative_decode(self.model, self.drafter, p, self.stop, max_new, self.draft_k)
                self.spec.add(stats)
                rows.append(row)
        else:
            pick = [self.constrain(p) for p in prompts] if self.constrain is not None else None
            rows = greedy_decode(self.model, prompts, self.chat.pad_id, self.stop, max_new, pick)
        for row in rows:
            text, finish = self.chat.turn(row, hit_limit=max_new == self.max_new_tokens)
            gens.append(Generation(text, finish))
        return gens

    def continuation_logprobs(self, prompt: list[int], conts: list[list[int]]) -> list[list[float]]:
        """log p of each continuation's tokens after `prompt` (prompt ids, as `chat.prompt_ids` makes them): one
        forward of the continuations side by side, right padded, logits only where a continuation is."""
        import torch

        seqs = [prompt + c for c in conts]
        width = max(map(len, seqs))
        ids = torch.tensor([s + [self.chat.pad_id] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        keep = width - len(prompt) + 1  # from the prompt's last position on
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
        logp = torch.log_softmax(logits.double(), dim=-1)
        return [[float(logp[r, j, t]) for j, t in enumerate(c)] for r, c in enumerate(conts)]

    def next_logits(self, ids: list[int]) -> Any:
        """The logits (float64 numpy, V) of the token after `ids`. The KV cache of the last call is kept and
        cut back to what `ids` shares with it: a walk that extends its ids a few tokens a call (a constrained
        ruling) computes each token once."""
        import torch
        from transformers import DynamicCache

        keep = 0
        if self._prefix is not None:
            seen, cache = self._prefix
            limit = min(len(seen), len(ids) - 1)  # the last token is fed again: its logits are wanted
            while keep < limit and seen[keep] == ids[keep]:
                keep += 1
        if keep == 0:
            cache = DynamicCache(config=self.model.config)
        elif keep < len(seen):
            cache.crop(keep - len(seen))  # this transformers takes the number of entries to drop, negated
        with torch.no_grad():
            logits = self.model(
                input_ids=torch.tensor([ids[keep:]]),
                position_ids=torch.arange(keep, len(ids))[None],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits
        self._prefix = (list(ids), cache)
        return logits[0, -1].double().numpy()

    def close(self) -> None:
        self.model = None
        self._prefix = None
