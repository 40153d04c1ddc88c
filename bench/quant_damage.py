"""What weight quantization does to a Worker's next-token distribution, part by part: a minute's proxy for
`bench/qat.py`'s hour of Core ML evaluation (issue 16).

Teacher-forced on the assistant tokens of N conversations (a contextual final set: held-out items for a fair
figure), the full-precision model's distribution against the same model with some matrices on the export's
grid (`export.quant.fake_quantize`: the package's weights bit for bit). For each variant: the mean
KL(full precision || quantized) per token and the top-1 agreement (the share of tokens whose greedy choice is
unchanged). Variants: each scheme everywhere, INT4 on the layers or the embedding (= the tied head) alone, and
INT4 with the embedding and `mlp.down_proj` at INT8; then each `--checkpoint` (a QAT run's, say) against the
same reference, as it is and on each scheme.

    .venv/bin/python bench/quant_damage.py --model RUN/final --data RUN/data/heldout.jsonl --items 24 \\
        --checkpoint QAT_RUN/final
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from kimi_student.backends.hf import load_causal_lm  # noqa: E402
from kimi_student.export.quant import fake_quantize, quantized_parameters, scheme  # noqa: E402

Pick = Callable[[str], str | None]  # parameter name -> the scheme it gets, None: full precision
VARIANTS: dict[str, Pick] = {
    "int8 everywhere": lambda n: "int8",
    "int4 everywhere (PTQ)": lambda n: "int4",
    "int4 layers, embedding full precision": lambda n: None if "embed" in n else "int4",
    "int4 embedding only": lambda n: "int4" if "embed" in n else None,
    "int4, embedding and mlp.down_proj int8": lambda n: (
        "int8" if ("embed" in n or "down_proj" in n) else "int4"
    ),
}


def everywhere(s: str | None) -> Pick:
    return lambda name: s


def on_grid(model: torch.nn.Module, pick: Pick) -> torch.nn.Module:
    with torch.no_grad():
        for name, p in quantized_parameters(model):
            if s := pick(name):
                p.copy_(fake_quantize(p, scheme(s)))
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="the full-precision Worker (an HF folder)")
    ap.add_argument("--data", type=Path, required=True, help="conversations (contextual final, teacher_text)")
    ap.add_argument("--items", type=int, default=24, help="the first N conversations")
    ap.add_argument("--checkpoint", type=Path, action="append", default=[], help="also this one (repeatable)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import AutoTokenizer

    from kimi_student.train.examples import ExampleBuilder, load_examples

    builder = ExampleBuilder(AutoTokenizer.from_pretrained(str(a.model)), {})
    examples = load_examples(builder, a.data, None, limit=a.items, system=False)
    cpu = platform.processor() or platform.machine()
    print(f"cpu: {cpu}, fp32, {a.threads} threads; {len(examples)} conversations")

    def model(path: Path) -> torch.nn.Module:
        return load_causal_lm(path).float().eval()

    reference = model(a.model)
    batches = []  # (ids, positions whose logits predict an assistant token, the reference's log-probs there)
    with torch.no_grad():
        for e in examples:
            ids = torch.tensor(e.input_ids[None])
            at = torch.from_numpy(np.nonzero(e.weights[1:] > 0)[0])
            batches.append((ids, at, torch.log_softmax(reference(input_ids=ids).logits[0, at].float(), -1)))
    tokens = sum(len(at) for _, at, _ in batches)

    def damage(m: torch.nn.Module) -> tuple[float, float]:
        kl = agree = 0.0
        with torch.no_grad():
            for ids, at, ref in batches:
                q = torch.log_softmax(m(input_ids=ids).logits[0, at].float(), -1)
                kl += float((ref.exp() * (ref - q)).sum())
                agree += float((ref.argmax(-1) == q.argmax(-1)).sum())
        return kl / tokens, agree / tokens

    print(f"\n{'variant':56}{'KL/token':>12}{'top-1 agree':>14}   ({tokens} assistant tokens)")
    rows = [(name, a.model, pick) for name, pick in VARIANTS.items()]
    for ck in a.checkpoint:
        rows += [(f"{ck}: {s or 'as it is'}", ck, everywhere(s)) for s in (None, "int8", "int4")]
    for name, path, pick in rows:
        t0 = time.perf_counter()
        kl, agree = damage(on_grid(model(path), pick))
        print(f"{name[-56:]:56}{kl:>12.5f}{agree:>14.5f}   {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
