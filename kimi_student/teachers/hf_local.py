"""In-process Hugging Face teacher: the embedded SmolLM2, an HF folder, or a .gguf file, offline.

Stores the generated text and, at every generated position, the top-k log-probs of the raw logits
(temperature 1, before any sampling warpers), so KD can re-temper them. It also scores given sequences
(`score`, teacher forcing): one forward over a padded batch, the top-k kept at the asked positions only.
"""

from __future__ import annotations

import asyncio
from functools import cached_property
from typing import Any

from kimi_student.backends.hf import cpu_has_bf16, hf_source, load_causal_lm, load_hf_tokenizer
from kimi_student.teachers.base import TeacherReply, TeacherRequest

SCORING_PRECISIONS = ("auto", "bf16", "no")


def scoring_precision(requested: str = "auto") -> str:
    """The scoring forward's precision: `auto` is bf16 autocast where the CPU has bf16 (AVX512-BF16/AMX;
    elsewhere it is many times slower than fp32), else fp32 ("no")."""
    if requested != "auto":
        return requested
    return "bf16" if cpu_has_bf16() else "no"


class HFTeacher:
    concurrency = 1  # one generate at a time: torch already uses every core
    batch_size = 8  # sequences per scoring forward (padded to the longest; 8 beat 4 by 1.3-1.5x here)

    def __init__(self, uri: str, top_k: int = 20):
        self.source = hf_source(uri)
        self.tokenizer = load_hf_tokenizer(self.source)
        self.id = self.source.teacher_id
        self.top_k = top_k

    @cached_property
    def model(self) -> Any:
        """Loaded on the first request that needs it: a rerun whose answers are all cached loads nothing."""
        return load_causal_lm(self.source).eval()

    def _generate(self, request: TeacherRequest) -> TeacherReply:
        import torch

        d = request.decoding
        ids = self.tokenizer.apply_chat_template(
            list(request.messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        torch.manual_seed(d.seed + int(request.key(self.id)[:8], 16))
        sample = d.temperature > 0
        with torch.no_grad():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=d.max_new_tokens,
                do_sample=sample,
                temperature=d.temperature if sample else None,
                top_p=d.top_p if sample else None,
                top_k=None,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        gen = out.sequences[0, ids.shape[1] :]
        logits = torch.stack(out.logits, dim=1)[0]  # (T, V) raw logits
        lp = torch.log_softmax(logits.float(), dim=-1)
        k = min(d.top_logprobs or self.top_k, lp.shape[-1])
        top = lp.topk(k, dim=-1)
        eos = self.tokenizer.eos_token_id
        finish = "stop" if len(gen) and int(gen[-1]) == eos else "length"
        return TeacherReply(
            text=self.tokenizer.decode(gen, skip_special_tokens=True),
            finish_reason=finish,
            token_ids=[int(x) for x in gen],
            topk_ids=top.indices.tolist(),
            topk_logprobs=top.values.tolist(),
            logprob_temperature=1.0,
            usage={"prompt_tokens": int(ids.shape[1]), "completion_tokens": len(gen)},
        )

    def score(self, requests: list[TeacherRequest]) -> list[TeacherReply]:
        """Each request's forced sequence through one forward (right-padded, masked). At a kept position
        j the row is the top-k of log_softmax(logits[j - 1]): the teacher's distribution for token j given
        all before it, from raw logits (temperature 1). Only the kept rows go through the LM head (the
        decoder's last hidden states, then the output embedding and any final soft-capping, as the
        model's own forward does): a padded batch's whole (B, L, V) logits would dwarf the model."""
        import torch

        forced = [r.forced for r in requests if r.forced is not None]
        assert len(forced) == len(requests), "score() takes teacher-forced requests only"
        ids = torch.zeros((len(forced), max(len(f.token_ids) for f in forced)), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, f in enumerate(forced):
            ids[i, : len(f.token_ids)] = torch.tensor(f.token_ids)
            mask[i, : len(f.token_ids)] = 1
        positions = [f.positions() for f in forced]
        row = torch.tensor([b for b, p in enumerate(positions) for _ in p])
        before = torch.tensor([j - 1 for p in positions for j in p])  # the logit before j predicts token j
        bf16 = forced[0].precision == "bf16"
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False)[0]
            logits = self.model.get_output_embeddings()(hidden[row, before]).float()
            cap = getattr(self.model.config, "final_logit_softcapping", None)
            if cap:
                logits = torch.tanh(logits / cap) * cap
            k = min(requests[0].decoding.top_logprobs or self.top_k, logits.shape[-1])
            top = torch.log_softmax(logits, dim=-1).topk(k, dim=-1)
        replies, start = [], 0
        for f, p in zip(forced, positions, strict=True):
            end = start + len(p)
            replies.append(
                TeacherReply(
                    text=f.text,
                    token_ids=[f.token_ids[j] for j in p],
                    topk_ids=top.indices[start:end].tolist(),
                    topk_logprobs=top.values[start:end].tolist(),
                    logprob_temperature=1.0,
                    usage={"tokens": len(f.token_ids), "scored_tokens": len(p)},
                )
            )
            start = end
        return replies

    async def complete(self, request: TeacherRequest) -> TeacherReply:
        return await asyncio.to_thread(self._generate, request)

    async def aclose(self) -> None:
        return None
