"""The weights a Core ML package holds are the fake-quantized weights QAT trains on, bit for bit (issue 16):
INT8 per output channel, INT4 per block of 32 (in both layouts) and INT4 with the vocabulary matrix at INT8,
read back from the saved package by the
MIL executor's loader. And the training side: inside `fake_quantized` the model computes on exactly those
weights, its gradient is the one taken at them (straight through), and leaving restores the full weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kimi_student.export.quant import SCHEMES, fake_quantize, quantized_parameters, scheme
from kimi_student.models.ane import load_ane_llama
from kimi_student.train.qat import fake_quantized

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One layer, every matrix's input width a multiple of 32 (INT4 blocks); weights with outliers, so a
    channel's or block's scale is set by one value and most values round to small integers."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    cfg = LlamaConfig(
        vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(std=0.05)
                p.view(-1)[::97] *= 40  # outliers
    out = tmp_path_factory.mktemp("quant") / "ckpt"
    model.save_pretrained(out)
    return out


@pytest.mark.parametrize(
    "weights,layout", [("int8", "bsc"), ("int4", "bsc"), ("int4", "bc1s"), ("int4emb8", "bc1s")]
)
def test_the_package_holds_the_fake_quantized_weights_bit_for_bit(
    tiny: Path, tmp_path: Path, weights: str, layout: str
) -> None:
    from kimi_student.export.coreml import export_coreml, weight_dtypes
    from kimi_student.export.mil import MilProgram

    man = export_coreml(tiny, tmp_path, [16], weights=weights, layout=layout, decode=False)
    assert man["quantization"]["dtype"] == weights[:4] and man["precision"]["weights"] == weights
    pkg = tmp_path / "seq16.mlpackage"
    stored = MilProgram.load(pkg).weights()
    module = load_ane_llama(tiny, 16)  # bsc: the checkpoint's (out, in) matrices
    matrices = quantized_parameters(module)
    assert len(matrices) == 7 + 1  # q k v o gate up down, the embedding (the tied head)
    # int4emb8: the seven layer matrices at INT4, the vocabulary matrix at INT8
    want_dtypes = {"int4": 7, "int8": 1} if weights == "int4emb8" else {weights: len(matrices)}
    if weights == "int4emb8":
        assert man["quantization"]["vocabulary"]["dtype"] == "int8"
    assert weight_dtypes(pkg) == want_dtypes
    for name, p in matrices:
        s = scheme(weights).of(name)
        assert s.bits == (8 if weights == "int8" or (weights == "int4emb8" and "embed" in name) else 4)
        stem = "p_" + name.replace(".", "_").replace("embed_tokens", "lm_head")  # the tied head's name
        (w,) = [v for k, v in stored.items() if k.startswith(stem + "_")]
        w = w.reshape(p.shape)  # bc1s: (out, in, 1, 1)
        assert w.dtype == np.float16
        want = fake_quantize(p, s).to(torch.float16).numpy()
        assert np.array_equal(w.view(np.uint16), want.view(np.uint16)), name  # every bit
        # not a vacuous equality: the grid moved the weights, and INT4 far more than INT8
        moved = np.abs(w.astype(np.float32) - p.detach().numpy()).max()
        assert moved > (1e-3 if s.bits == 4 else 1e-5), name
        groups = w.reshape(w.shape[0], -1, s.block_size or w.shape[1])  # each group: one scale
        assert max(len(np.unique(g)) for g in groups.reshape(-1, groups.shape[-1])) <= 2 * s.qmax + 1


def test_fake_quantize_matches_the_schemes_arithmetic() -> None:
    """The grid itself, on numbers worked by hand: INT8 scale = max|w| / 127 per row, INT4 per block of 32."""
    w = torch.zeros(2, 64)
    w[0, 0], w[0, 1], w[0, 2] = 1.27, 0.5, -0.0049  # row 0: scale 0.01 -> 127, 50, -0 (0.49 rounds to 0)
    w[1, :32] = 0.7
    w[1, 32] = -2.0  # INT4: block 0 scale 0.1 (all 7), block 1 scale 2/7
    q8 = fake_quantize(w, SCHEMES["int8"]).double()
    scale = torch.tensor(1.27, dtype=torch.float16) * 2 / 254
    assert q8[0, 0] == (127 * scale).item() and q8[0, 1] == (50 * scale).item() and q8[0, 2] == 0
    q4 = fake_quantize(w, SCHEMES["int4"]).double()
    s0 = (torch.tensor(0.7, dtype=torch.float16) * 2 / 14).to(torch.float16)
    assert (q4[1, :32] == (7 * s0).to(torch.float16).item()).all()
    assert q4[1, 32] == torch.tensor(-2.0, dtype=torch.float16).item() and (q4[1, 33:] == 0).all()
    with pytest.raises(Exception, match="does not split into int4 blocks of 32"):
        fake_quantize(torch.ones(4, 48), SCHEMES["int4"])


@pytest.mark.parametrize("weights", ["int8", "int4", "int4emb8"])
def test_qat_computes_on_the_package_weights_and_keeps_the_full_ones(tiny: Path, weights: str) -> None:
    from transformers import AutoModelForCausalLM

    s = scheme(weights)
    model = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    grid = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    with torch.no_grad():
        for n, p in quantized_parameters(grid):
            p.copy_(fake_quantize(p, s.of(n)))
    full = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(0, 320, (2, 12), generator=torch.Generator().manual_seed(0))
    with fake_quantized(model, s):
        loss = model(ids, labels=ids).loss
        loss.backward()
    grid_loss = grid(ids, labels=ids).loss
    grid_loss.backward()
    assert loss.item() == grid_loss.item()  # the forward ran on the package's weights
    for (n, p), (_, g) in zip(model.named_parameters(), grid.named_parameters(), strict=True):
        assert torch.equal(p, full[n]), n  # the full weights are back for the optimizer
        assert torch.equal(p.grad, g.grad), n  # the gradient at the quantized point (straight through)
    plain = model(ids, labels=ids).loss
    assert plain.item() != loss.item()  # and the grid changes what the model computes


def test_every_scheme_is_a_qat_choice_and_an_export_choice() -> None:
    """train.config names the schemes without importing torch; the names must stay the export's."""
    from kimi_student.export.coreml import WEIGHTS
    from kimi_student.train.config import QAT_WEIGHTS

    assert QAT_WEIGHTS == tuple(SCHEMES) and WEIGHTS == (*SCHEMES, "fp16")
    mixed = scheme("int4emb8")
    vocabulary = ("model.embed_tokens.weight", "p_lm_head_weight_to_fp16")  # torch's, the export's names
    assert [mixed.of(n).name for n in vocabulary] == ["int8", "int8"]
    assert mixed.of("model.layers.0.self_attn.q_proj.weight").name == "int4emb8"
    assert scheme("int4").of("model.embed_tokens.weight").name == "int4"
