"""In-process Hugging Face teacher: the embedded SmolLM2, an HF folder, or a .gguf file, offline.

Stores the generated text and, at every generated position, the top-k log-probs of the raw logits
(temperature 1, before any sampling warpers), so KD can re-temper them.
"""

from __future__ import annotations

import asyncio

from kimi_student.backends.hf import hf_source, load_causal_lm, load_hf_tokenizer
from kimi_student.teachers.base import TeacherReply, TeacherRequest


class HFTeacher:
    concurrency = 1  # one generate at a time: torch already uses every core

    def __init__(self, uri: str, top_k: int = 20):
        source = hf_source(uri)
        self.model = load_causal_lm(source).eval()
        self.tokenizer = load_hf_tokenizer(source)
        self.id = source.teacher_id
        self.top_k = top_k

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

    async def complete(self, request: TeacherRequest) -> TeacherReply:
        return await asyncio.to_thread(self._generate, request)

    async def aclose(self) -> None:
        return None
