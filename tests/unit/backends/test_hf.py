"""The one HF loader: every model reference form (`smollm2`, `hf:DIR`, a plain DIR, `hf:FILE.gguf`) to its
files, the id a teacher answers under, and an fp32 model loaded from each form."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimi_student.backends.embedded import smollm2_folder
from kimi_student.backends.hf import (
    HFSource,
    find_source,
    hf_source,
    load_causal_lm,
    load_hf_tokenizer,
    resolve_teacher_folder,
)
from kimi_student.errors import KimiStudentError
from kimi_student.fingerprint import hf_teacher_id, sha256_file
from kimi_student.tokenizer import smollm2_gguf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer Llama folder with the embedded tokenizer (a few hundred kB)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny")
    cfg = LlamaConfig(
        vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(smollm2_folder())).save_pretrained(out)
    return out


def test_reference_forms_resolve_to_their_files(tiny: Path, tmp_path: Path) -> None:
    assert find_source("smollm2") == HFSource("smollm2", smollm2_folder())
    assert find_source(f"hf:{tiny}") == HFSource(f"hf:{tiny}", tiny)
    assert find_source(str(tiny)) == HFSource(str(tiny), tiny)  # a plain folder
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert find_source(f"hf:{gguf}") == HFSource(f"hf:{gguf}", tmp_path, "m.gguf")
    assert find_source(f"hf:{tmp_path / 'absent'}") is None and find_source(f"hf:{tmp_path}") is None


def test_teacher_ids_of_each_form(tiny: Path, tmp_path: Path) -> None:
    assert hf_source("smollm2").teacher_id == f"smollm2:{smollm2_folder().name}"
    assert smollm2_folder().name == f"smollm2-{sha256_file(smollm2_gguf())[:16]}"
    assert hf_source(f"hf:{tiny}").teacher_id == hf_teacher_id(tiny)
    assert hf_source(f"hf:{tiny}").teacher_id == f"hf:{sha256_file(tiny / 'model.safetensors')[:16]}"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert hf_source(f"hf:{gguf}").teacher_id == f"gguf:{sha256_file(gguf)[:16]}"


def test_bad_references_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(KimiStudentError, match=r"not an HF folder \(config.json\) or a .gguf file"):
        hf_source(f"hf:{tmp_path}")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    for ref in (f"hf:{tmp_path}", f"hf:{gguf}"):  # the trainer needs a folder: no .gguf
        with pytest.raises(KimiStudentError, match=r"no config.json \(use 'smollm2' or an HF folder\)"):
            resolve_teacher_folder(ref)


def test_teacher_folder_of_smollm2_and_hf(tiny: Path) -> None:
    assert resolve_teacher_folder("smollm2") == smollm2_folder()
    assert resolve_teacher_folder(f"hf:{tiny}") == tiny == resolve_teacher_folder(str(tiny))


def test_load_causal_lm_from_a_reference_a_folder_or_files(tiny: Path) -> None:
    import torch

    models = [load_causal_lm(f"hf:{tiny}"), load_causal_lm(tiny), load_causal_lm(hf_source(str(tiny)))]
    ref = models[0].state_dict()
    for m in models:
        assert m.config.num_hidden_layers == 2 and m.dtype == torch.float32
        assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items())
    tok = load_hf_tokenizer(hf_source(f"hf:{tiny}"))
    assert tok.chat_template is not None and tok.eos_token_id == 2


def test_a_gguf_source_loads_through_gguf_file(tiny: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert hf_source(f"hf:{gguf}").pretrained_args() == (str(tmp_path), {"gguf_file": "m.gguf"})
    assert hf_source(f"hf:{tiny}").pretrained_args() == (str(tiny), {})


# De-quantizes 135M parameters and parses a 49k-token vocabulary (~25 s on two quiet cores): `make test-slow`.
# `make test` proves our part, that `hf:FILE.gguf` reaches transformers as (folder, gguf_file=FILE), in
# test_a_gguf_source_loads_through_gguf_file, and transformers' own load of this file is what builds the
# embedded teacher's cached folder (smollm2_folder) on a machine that has none yet.
@pytest.mark.slow
@pytest.mark.extra
def test_load_causal_lm_from_a_gguf_file() -> None:
    """The embedded SmolLM2 GGUF, de-quantized by transformers (the `hf:FILE.gguf` teacher)."""
    import torch

    src = hf_source(f"hf:{smollm2_gguf()}")
    model = load_causal_lm(src)
    assert model.dtype == torch.float32 and model.config.num_hidden_layers == 30
    assert load_hf_tokenizer(src).eos_token_id == 2
