"""Export stage: the ANE module against HF, its KV-cache decoder, .pt2, Core ML packages, ONNX.

Everything runs on the toy Worker checkpoint (2 layers, 64 wide, SmolLM2 vocabulary): real models, real
converters, nothing mocked. Core ML cannot predict on Linux, so packages are checked structurally
(shapes, states, op histogram, int8 weights, sha256) and numerics are checked in PyTorch and onnxruntime.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from kimi_student.export.errors import CorruptArtifactError, ExportError, UnsupportedOpError
from kimi_student.models.ane import AneLlamaDecoder, CheckpointError, RMSNorm, load_ane_llama
from tests.support import ks, ks_here

pytestmark = [pytest.mark.slow]

TOY_SHAPES = [64, 128]  # two shapes and the decoder: per-shape packages at the least cost
N_LAYERS, N_MATRICES_PER_LAYER = 2, 7  # q, k, v, o, gate, up, down
DEQUANT = "constexpr_blockwise_shift_scale"  # iOS18's int8 -> fp16 weight dequantization op


def _ids(n: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed), dtype=torch.int32)


def _hf_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        return hf(ids.long()).logits


@pytest.fixture(scope="module")
def untied_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untied head, 1 kv head for 4 query heads, explicit head_dim != hidden/heads, attention biases,
    and the older config spelling with a top-level `rope_theta`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    cfg = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        tie_word_embeddings=False,
        attention_bias=True,
    )
    model = LlamaForCausalLM(cfg)
    for p in model.parameters():  # HF initialises biases to 0; make them count
        torch.nn.init.normal_(p, std=0.1)
    out = tmp_path_factory.mktemp("untied") / "ckpt"
    model.save_pretrained(out)
    raw = json.loads((out / "config.json").read_text())
    raw["rope_theta"] = raw.pop("rope_parameters")["rope_theta"]
    (out / "config.json").write_text(json.dumps(raw))
    return out


# ---- the ANE module --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["bsc", "bc1s"])
def test_logits_match_hf(toy_checkpoint: Path, untied_checkpoint: Path, layout: str) -> None:
    for folder, vocab in ((toy_checkpoint, 49152), (untied_checkpoint, 300)):
        ids = _ids(48, vocab)
        model = load_ane_llama(folder, max_seq=64, layout=layout)
        with torch.no_grad():
            ours = model(ids)
        ref = _hf_logits(folder, ids)
        assert ours.shape == ref.shape == (1, 48, vocab)
        assert (ours - ref).abs().max().item() <= 1e-4, folder


@pytest.mark.parametrize("layout", ["bsc", "bc1s"])
def test_decoder_greedy_equals_full_sequence(toy_checkpoint: Path, layout: str) -> None:
    model = load_ane_llama(toy_checkpoint, max_seq=64, layout=layout)
    dec = AneLlamaDecoder(model, context=64)
    prompt, steps = _ids(6, 49152, seed=3)[0].tolist(), 20

    full = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            full.append(int(model(torch.tensor([full], dtype=torch.int32))[0, -1].argmax()))

    def decode() -> tuple[list[int], float]:
        toks, worst = list(prompt), 0.0
        with torch.no_grad():
            for pos in range(len(prompt) + steps - 1):
                logits = dec(
                    torch.tensor([[toks[pos]]], dtype=torch.int32), torch.tensor([pos], dtype=torch.int32)
                )
                if pos >= len(prompt) - 1:
                    ref = model(torch.tensor([toks[: pos + 1]], dtype=torch.int32))[0, -1]
                    worst = max(worst, (logits[0, -1] - ref).abs().max().item())
                    toks.append(int(logits[0, -1].argmax()))
        return toks, worst

    toks, worst = decode()
    assert toks == full and worst <= 1e-4
    assert decode()[0] == full  # a second sequence from position 0 needs no reset: stale entries are masked


def test_fp16_rmsnorm_does_not_overflow() -> None:
    x = torch.randn(1, 8, 64) * 2000  # activations this large do occur in residual streams
    assert torch.isinf((x.half() * x.half()).mean(-1)).any()  # the textbook formula overflows in fp16
    for layout, xin in (("bsc", x), ("bc1s", x.transpose(1, 2)[:, :, None])):
        norm = RMSNorm(64, 1e-6, layout)
        with torch.no_grad():
            y32, y16 = norm(xin), norm.half()(xin.half()).float()
        assert torch.isfinite(y16).all() and (y32 - y16).abs().max().item() < 1e-2


def test_bad_checkpoints_are_named(tmp_path: Path, toy_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="config.json: not found"):
        load_ane_llama(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(toy_checkpoint, bad)
    raw = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**raw, "hidden_size": 32}))
    with pytest.raises(CheckpointError, match="has shape"):
        load_ane_llama(bad)


# ---- torch.export ----------------------------------------------------------------------------------------


def test_pytorch_export_cli_and_reload(tmp_path: Path, toy_checkpoint: Path) -> None:
    from kimi_student.export.torch_export import load_program

    out = tmp_path / "pt"
    r = ks_here("export", "pytorch", "--model", toy_checkpoint, "--out", out, "--shapes", "64")
    assert r.returncode == 0, r.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert [(p["file"], p["kind"]) for p in man["programs"]] == [
        ("seq64.pt2", "full"),
        ("decode64.pt2", "decode"),
    ]
    assert man["programs"][1]["mutated_buffers"] == ["k_cache", "v_cache"]
    ids = _ids(64, 49152)
    ep = load_program(out / "seq64.pt2")  # checks the sha256 first
    with torch.no_grad():
        got, want = ep.module()(ids), load_ane_llama(toy_checkpoint, max_seq=64)(ids)
    assert torch.equal(got, want)
    with (out / "seq64.pt2").open("r+b") as fh:  # one flipped byte
        fh.seek(100)
        b = fh.read(1)
        fh.seek(100)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(CorruptArtifactError, match=r"seq64\.pt2: sha256"):
        load_program(out / "seq64.pt2")
    r = ks_here("export", "verify", out)  # test_coreml_corrupt_package_names_the_file's runs in a process
    assert r.returncode == 2 and "seq64.pt2: sha256" in r.stderr


# ---- Core ML ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coreml_out(tmp_path_factory: pytest.TempPathFactory, toy_checkpoint: Path) -> Path:
    """The toy shapes and the stateful decoder with one chunk function, INT8, through the CLI (in process: a
    decoder function is ~5 s of conversion; test_kv_decode holds three)."""
    out = tmp_path_factory.mktemp("coreml") / "artifacts"
    shapes = ",".join(map(str, TOY_SHAPES))
    r = ks_here(
        "export", "coreml", "--model", toy_checkpoint, "--out", out, "--shapes", shapes, "--chunks", "8"
    )
    assert r.returncode == 0, r.stderr
    assert "int8 weights, iOS18" in r.stdout
    return out


def test_coreml_packages_per_shape_and_manifest(coreml_out: Path, toy_checkpoint: Path) -> None:
    from kimi_student.export.coreml import load_coreml_spec, op_histogram, package_files
    from kimi_student.fingerprint import sha256_json, weights_sha256

    man = json.loads((coreml_out / "manifest.json").read_text())
    assert man["shapes"] == TOY_SHAPES and man["context"] == 128
    assert man["precision"] == {"compute": "float16", "weights": "int8"}
    assert (
        man["quantization"]["mode"] == "linear_symmetric"
        and man["quantization"]["granularity"] == "per_channel"
    )
    assert man["minimum_deployment_target"] == "iOS18" and man["checkpoint_sha256"] == weights_sha256(
        toy_checkpoint
    )
    names = [p["name"] for p in man["packages"]]
    assert names == [f"seq{s}.mlpackage" for s in TOY_SHAPES] + ["decode128.mlpackage"]
    for entry in man["packages"]:
        pkg = coreml_out / entry["name"]
        spec = load_coreml_spec(pkg)
        files = package_files(pkg)
        assert entry["files"] == files and entry["sha256"] == sha256_json(files)
        assert entry["size_bytes"] == sum(f.stat().st_size for f in pkg.rglob("*") if f.is_file())
        assert entry["op_histogram"] == op_histogram(spec)
        assert spec.specificationVersion >= 9  # iOS18
        got_in = {i.name: list(i.type.multiArrayType.shape) for i in _described(spec).input}
        got_out = {o.name: list(o.type.multiArrayType.shape) for o in _described(spec).output}
        assert got_in == entry["inputs"] and got_out == entry["outputs"]
        if entry["kind"] == "full":
            assert got_in == {"input_ids": [1, entry["seq_len"]]} and got_out == {
                "logits": [1, entry["seq_len"], 49152]
            }
            assert not spec.description.state


def _described(spec: Any, function: str = "main") -> Any:
    """A function's description (inputs, outputs, states): multifunction packages describe each apart."""
    return next((f for f in spec.description.functions if f.name == function), spec.description)


def test_coreml_int8_weights_are_present(coreml_out: Path) -> None:
    from kimi_student.export.coreml import weight_dtypes

    for name, functions in (("seq64.mlpackage", 1), ("decode128.mlpackage", 2)):
        entry = next(
            p for p in json.loads((coreml_out / "manifest.json").read_text())["packages"] if p["name"] == name
        )
        n = N_LAYERS * N_MATRICES_PER_LAYER + 1  # + the embedding, which the tied head shares
        assert entry["op_histogram"][DEQUANT] == n * functions  # each function dequantizes ...
        assert weight_dtypes(coreml_out / name) == {"int8": n * functions}
        # ... the package's one copy of the int8 weights: about a quarter of the fp32 embedding
        # (49152 x 64 x 4 bytes), whatever the number of functions
        assert entry["size_bytes"] < 49152 * 64 * 4 * 0.3


def test_coreml_stateful_decoder(coreml_out: Path) -> None:
    from kimi_student.export.coreml import load_coreml_spec

    spec = load_coreml_spec(coreml_out / "decode128.mlpackage")
    entry = json.loads((coreml_out / "manifest.json").read_text())["packages"][-1]
    # prefill and draft verification beside one-token decoding, one package
    assert entry["functions"] == {"main": 1, "chunk8": 8}
    assert spec.description.defaultFunctionName == "main"
    for name, q in entry["functions"].items():
        d = _described(spec, name)
        states = {s.name: list(s.type.stateType.arrayType.shape) for s in d.state}
        assert states == {"k_cache": [2, 2, 128, 16], "v_cache": [2, 2, 128, 16]}  # (L, KV, context, hd)
        assert {i.name: list(i.type.multiArrayType.shape) for i in d.input} == {
            "input_ids": [1, q], "position": [1],
        }  # fmt: skip
        assert [list(o.type.multiArrayType.shape) for o in d.output] == [[1, q, 49152]]
    hist = entry["op_histogram"]
    # each layer writes its keys and values with one scatter each, whatever the query length
    assert hist["write_state"] == 2 * 2 and hist["scatter_nd"] == 2 * N_LAYERS * 2


def test_coreml_fp16_and_ane_layout(tmp_path: Path, toy_checkpoint: Path) -> None:
    from kimi_student.export.coreml import export_coreml, weight_dtypes

    man = export_coreml(toy_checkpoint, tmp_path, [64], weights="fp16", layout="bc1s", decode=False)
    (entry,) = man["packages"]
    assert man["precision"] == {"compute": "float16", "weights": "float16"} and man["quantization"] is None
    hist = entry["op_histogram"]
    assert DEQUANT not in hist and weight_dtypes(tmp_path / "seq64.mlpackage") == {}
    assert hist["conv"] == N_LAYERS * N_MATRICES_PER_LAYER and hist["linear"] == 1  # 1x1 convs; the tied head
    assert 49152 * 64 * 2 < entry["size_bytes"] < 49152 * 64 * 2 * 1.3  # fp16, and the embedding stored once
    # parity on a bc1s package: its (out, in, 1, 1) conv weights stand in for the (out, in) linear ones
    from kimi_student.export.parity import check_parity

    rep = check_parity(toy_checkpoint, tmp_path / "seq64.mlpackage", [[1, 2, 3, 4, 5]], greedy_tokens=3)
    assert rep.weights_replaced == N_LAYERS * N_MATRICES_PER_LAYER
    assert rep.top1_agreement == 1.0 and rep.greedy_match and rep.max_abs_logit_diff < 0.05


# ---- export parity: the package in the numpy MIL executor against PyTorch ----------------------------------


PARITY_PROMPTS = ["Search the web for rust async runtimes", "Read the file notes/todo.md", "What is 12 * 7?"]


def _parity(tmp_path: Path, package: Path, model: Path, *extra: str) -> tuple[object, dict | None]:
    """`export parity` on three prompts, in this process (`ks_here`: no second torch start). The export CLI
    runs in a process of its own in `coreml_out` (exit 0) and test_export_rejects_shape_beyond_the_checkpoint
    (exit 2)."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": str(i), "prompt": t}) + "\n" for i, t in enumerate(PARITY_PROMPTS))
    )
    report = tmp_path / "parity.json"
    r = ks_here(
        "export", "parity", "--package", package, "--model", model, "--prompts", prompts,
        "--n", "3", "--tokens", "4", "--report", report, *extra,
    )  # fmt: skip
    return r, (json.loads(report.read_text()) if report.exists() else None)


def test_export_parity_cli_passes_on_its_own_package(
    coreml_out: Path, toy_checkpoint: Path, tmp_path: Path
) -> None:
    """README: `export parity` runs the package in the MIL executor and compares it with PyTorch on the
    package's own dequantized weights: max abs logit difference, top-1 agreement, greedy equality."""
    r, rep = _parity(tmp_path, coreml_out / "seq64.mlpackage", toy_checkpoint)
    assert r.returncode == 0, r.stderr
    assert rep is not None and rep["weights_replaced"] == N_LAYERS * N_MATRICES_PER_LAYER  # every int8 matrix
    assert rep["prompts"] == 3 and rep["seq_len"] == 64 and rep["greedy_tokens"] == 4
    assert 0 < rep["max_abs_logit_diff"] < 0.05  # fp16 compute: small, and not the checkpoint against itself
    assert rep["top1_agreement"] == 1.0 and rep["greedy_match"] is True
    assert rep["greedy_torch"] == rep["greedy_package"] and all(len(g) == 4 for g in rep["greedy_torch"])
    assert "14 dequantized package weights" in r.stdout and "greedy 4 tokens identical" in r.stdout


def test_export_parity_cli_fails_on_another_checkpoint(coreml_out: Path, tmp_path: Path) -> None:
    """Exit 1 when top-1 or greedy differ: the same architecture with other weights (seed 1) only shares
    the package's int8 matrices, so the embeddings and norms differ and the logits do too."""
    from kimi_student.backends.embedded import smollm2_folder
    from kimi_student.models.student import build_student, load_spec, save_checkpoint

    other = save_checkpoint(
        build_student(load_spec("worker", "toy"), seed=1), smollm2_folder(), tmp_path / "s1"
    )
    r, rep = _parity(tmp_path, coreml_out / "seq64.mlpackage", other)
    assert r.returncode == 1, r.stderr
    assert rep is not None and rep["top1_agreement"] < 1.0 and rep["max_abs_logit_diff"] > 0.05


def test_export_parity_refuses_a_package_without_matching_weights(
    coreml_out: Path, untied_checkpoint: Path, toy_checkpoint: Path, tmp_path: Path
) -> None:
    """No package weight matches the checkpoint (another model): the dequantized comparison would silently
    compare PyTorch on the checkpoint's weights; it is one line on stderr and exit 2 instead."""
    model = tmp_path / "untied"
    shutil.copytree(untied_checkpoint, model)
    shutil.copy(toy_checkpoint / "tokenizer.json", model / "tokenizer.json")
    r, rep = _parity(tmp_path, coreml_out / "seq64.mlpackage", model)
    assert r.returncode == 2 and rep is None
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert "seq64.mlpackage: none of the" in line and "--no-dequantized" in line
    r, _ = _parity(tmp_path, coreml_out / "seq64.mlpackage", untied_checkpoint)  # no tokenizer
    assert r.returncode == 2 and "no tokenizer.json" in r.stderr and "Traceback" not in r.stderr


def test_coreml_corrupt_package_names_the_file(coreml_out: Path, tmp_path: Path) -> None:
    from kimi_student.export.coreml import load_coreml_spec, load_mil

    out = tmp_path / "copy"
    shutil.copytree(coreml_out, out)
    weights = out / "seq64.mlpackage" / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    with weights.open("r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    r = ks("export", "verify", out)
    assert r.returncode == 2
    assert (
        r.stderr.startswith("error: ")
        and "seq64.mlpackage/Data/com.apple.CoreML/weights/weight.bin: sha256" in r.stderr
    )
    with pytest.raises(CorruptArtifactError, match="weight.bin: cannot read the weights"):
        load_mil(out / "seq64.mlpackage")
    spec_file = out / "seq128.mlpackage" / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec_file.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(
        CorruptArtifactError, match=r"seq128\.mlpackage/Data/com\.apple\.CoreML/model\.mlmodel: not a Core ML"
    ):
        load_coreml_spec(out / "seq128.mlpackage")
    shutil.rmtree(out / "decode128.mlpackage")
    with pytest.raises(CorruptArtifactError, match="decode128.mlpackage: package missing"):
        from kimi_student.export.coreml import verify_package

        entry = json.loads((out / "manifest.json").read_text())["packages"][-1]
        verify_package(out / "decode128.mlpackage", entry)


def test_unsupported_op_is_named(toy_checkpoint: Path) -> None:
    """HF's own LlamaForCausalLM does not convert (DESIGN §6): the error lists the ops, `diff` first."""
    from transformers import AutoModelForCausalLM

    from kimi_student.export.coreml import convert
    from kimi_student.export.torch_export import export_program

    class Logits(torch.nn.Module):
        def __init__(self, m: torch.nn.Module):
            super().__init__()
            self.m = m

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=ids, use_cache=False).logits

    hf = AutoModelForCausalLM.from_pretrained(str(toy_checkpoint), dtype=torch.float32).eval()
    ep = export_program(Logits(hf), (torch.zeros(1, 16, dtype=torch.long),))
    with pytest.raises(UnsupportedOpError, match=r"does not support op\(s\): diff") as e:
        convert(ep, "full")
    assert "diff" in e.value.ops and isinstance(e.value, ExportError)


def test_export_rejects_shape_beyond_the_checkpoint(toy_checkpoint: Path, tmp_path: Path) -> None:
    r = ks("export", "coreml", "--model", toy_checkpoint, "--out", tmp_path, "--shapes", "512,2048")
    assert (
        r.returncode == 2 and "shape 2048 exceeds the checkpoint's max_position_embeddings 1024" in r.stderr
    )
    r = ks_here("export", "coreml", "--model", toy_checkpoint, "--out", tmp_path, "--shapes", "64,x")
    assert r.returncode == 2 and "--shapes '64,x'" in r.stderr


# ---- ONNX ------------------------------------------------------------------------------------------------


def test_onnx_parity(tmp_path: Path, toy_checkpoint: Path) -> None:
    import numpy as np

    from kimi_student.export.onnx_export import ort_logits

    r = ks_here(
        "export", "onnx", "--model", toy_checkpoint, "--out", tmp_path, "--shapes", "64", "--layout", "bc1s"
    )
    assert r.returncode == 0, r.stderr
    assert "onnxruntime parity max|diff|" in r.stdout
    (entry,) = json.loads((tmp_path / "manifest.json").read_text())["files"]
    assert (
        entry["parity_max_abs_diff"] <= 1e-4
        and entry["op_histogram"]["Conv"] == N_LAYERS * N_MATRICES_PER_LAYER
    )
    ids = _ids(64, 49152, seed=7)  # and against HF itself, not only against our module
    diff = np.abs(
        ort_logits(tmp_path / "seq64.onnx", ids.numpy()) - _hf_logits(toy_checkpoint, ids).numpy()
    ).max()
    assert diff <= 1e-4


def test_a_settled_package_has_the_same_bytes_whatever_ids_coremltools_drew(
    coreml_out: Path, tmp_path: Path
) -> None:
    """`settle` (every saved package): Manifest.json's random item ids become UUIDs named by each item's path and
    the spec is written with its maps in key order, so one program gives one package's bytes; the package
    still parses and the executor still reads it."""
    import uuid

    from kimi_student.export.coreml import load_coreml_spec, package_files, settle
    from kimi_student.export.mil import MilProgram

    src = coreml_out / "decode128.mlpackage"
    copies = []
    for name in ("a", "b"):  # ids drawn again, as coremltools draws them on every save
        pkg = shutil.copytree(src, tmp_path / name / src.name)
        man = json.loads((pkg / "Manifest.json").read_text())
        ids = {old: str(uuid.uuid4()) for old in man["itemInfoEntries"]}
        man["itemInfoEntries"] = {ids[k]: v for k, v in man["itemInfoEntries"].items()}
        man["rootModelIdentifier"] = ids[man["rootModelIdentifier"]]
        (pkg / "Manifest.json").write_text(json.dumps(man))
        settle(pkg)
        copies.append(package_files(pkg))
    assert copies[0] == copies[1] == package_files(src)  # the export settled it already
    items = json.loads((src / "Manifest.json").read_text())["itemInfoEntries"]
    assert len(items) == 2 and all(uuid.UUID(i).version == 5 for i in items)
    spec = load_coreml_spec(src)
    model = (src / "Data" / "com.apple.CoreML" / "model.mlmodel").read_bytes()
    assert spec.HasField("mlProgram") and model == spec.SerializeToString(deterministic=True)
    MilProgram.load(tmp_path / "a" / src.name)


@pytest.mark.extra
def test_the_same_checkpoint_exports_to_the_same_package_bytes(
    untied_checkpoint: Path, tmp_path: Path
) -> None:
    """Two exports of one checkpoint give byte-identical packages (a full-sequence one and a multifunction
    decoder), so their digests and the coreml runner's model fingerprint name the model, not the export:
    coremltools alone draws Manifest.json's item ids at random and writes the spec's maps in hash order. (The cheaper
    proof in make test: test_a_settled_package_has_the_same_bytes_whatever_ids_coremltools_drew.)"""
    import uuid

    from kimi_student.export.coreml import load_coreml_spec
    from kimi_student.export.mil import MilProgram

    mans = []
    for out in (tmp_path / "a", tmp_path / "b"):
        r = ks_here(
            "export", "coreml", "--model", untied_checkpoint, "--out", out, "--shapes", "16", "--chunks", "4"
        )
        assert r.returncode == 0, r.stderr
        mans.append(json.loads((out / "manifest.json").read_text()))
    for a, b in zip(*(m["packages"] for m in mans), strict=True):
        assert a["name"] == b["name"] and a["files"] == b["files"] and a["sha256"] == b["sha256"], a["name"]
        pkg = tmp_path / "a" / a["name"]
        items = json.loads((pkg / "Manifest.json").read_text())["itemInfoEntries"]
        assert len(items) == 2 and all(uuid.UUID(i).version == 5 for i in items)  # one id an item, named
        assert load_coreml_spec(pkg).HasField("mlProgram")
        MilProgram.load(pkg)  # and the executor still reads it
    assert {p["name"] for p in mans[0]["packages"]} == {"seq16.mlpackage", "decode16.mlpackage"}
