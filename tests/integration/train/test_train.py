"""Students and the trainer, for real on the toy size: loss goes down, checkpoints load in HF, a NaN stops
the run and keeps the last good checkpoint. Kill-and-resume (the uninterrupted loss curve, exactly) is
tests/integration/test_kill_anywhere.py's, at random moments."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from kimi_student.errors import InputError
from kimi_student.models.student import build_student, even_layers, load_spec
from kimi_student.resources import config_path
from kimi_student.train import checkpoint
from kimi_student.train import trainer as T
from kimi_student.train.config import CurriculumStage, LossWeights, TrainConfig
from kimi_student.train.threads import available_cores
from tests.support import ks_here

pytestmark = [pytest.mark.slow]

TOY = {
    "hidden_size": 64,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "vocab_size": 49152,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}


def _config(tmp: Path, **train: object) -> Path:
    base = {
        "system_prompt": False,
        "lr": 3e-3,
        "warmup_steps": 2,
        "batch_size": 2,
        "max_steps": 10,
        "grad_clip": 1.0,
        "seq_curriculum": [{"until_step": 4, "seq_len": 96}, {"until_step": None, "seq_len": 160}],
        "loss": {"ce_ground_truth": 1.0, "ce_teacher": 1.0, "kl_forward": 1.0, "temperature": 2.0},
        "process_weights": {"tool_name": 2.0, "json_args": 1.5, "integration": 2.0},
        "checkpoint_every": 3,
        "seed": 0,
        "precision": "no",
    }
    base.update(train)
    p = tmp / "cfg.yaml"
    p.write_text(yaml.safe_dump({"role": "worker", "train": base, "sizes": {"toy": {"arch": TOY}}}))
    return p


def _log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


def test_toy_training_lowers_the_loss_and_the_checkpoint_loads_in_hf(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = _config(tmp_path, max_steps=20, lr=5e-3)
    r = ks_here(  # the CLI in this process; test_kill_anywhere and test_untrusted_run train in a process of its own
        "train", "--config", cfg, "--data", dataset["final"], "--out", tmp_path / "run", "--precision", "no"
    )
    assert r.returncode == 0, r.stderr
    losses = [h["loss"] for h in _log(tmp_path / "run")]
    assert len(losses) == 20 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    final = tmp_path / "run" / "final"
    model = AutoModelForCausalLM.from_pretrained(str(final))
    tok = AutoTokenizer.from_pretrained(str(final))
    assert model.config.num_hidden_layers == 2 and len(tok) == 49152
    manifest = json.loads((final / "manifest.json").read_text())
    assert set(manifest) >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert len(list((tmp_path / "run" / "checkpoints").glob("step-*"))) == 2  # the newest two are kept


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    dataset: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = T.compute_loss
    calls = {"n": 0}

    def faulty(*a: object, **kw: object):  # noqa: ANN202 - injects the fault a real run would hit
        calls["n"] += 1
        loss, parts = real(*a, **kw)
        return (loss * float("nan") if calls["n"] == 5 else loss), parts

    monkeypatch.setattr(T, "compute_loss", faulty)
    spec = load_spec(_config(tmp_path, checkpoint_every=2), "toy")
    with pytest.raises(T.TrainingError, match=r"loss is nan at step 5 .*step-000004"):
        T.train(spec, tmp_path / "run", data=str(dataset["final"]), precision="no")
    latest = checkpoint.RunPaths(tmp_path / "run").latest()
    assert latest is not None and latest.name == "step-000004"
    checkpoint.verify(latest)
    assert not (tmp_path / "run" / "final").exists()


def test_an_inf_loss_exits_3_through_the_cli(dataset: dict[str, Path], tmp_path: Path) -> None:
    """README: a NaN/inf loss stops with exit 3. A loss weight past fp32's range makes the first loss inf."""
    cfg = _config(tmp_path, warmup_steps=0, checkpoint_every=1, max_steps=4, loss={"ce_ground_truth": 1e39})
    r = ks_here(  # in this process; `exploded` below is exit 3 across the process boundary
        "train", "--config", cfg, "--data", dataset["final"], "--out", tmp_path / "run", "--precision", "no"
    )
    assert r.returncode == 3, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert "loss is inf at step 1 " in line and "none (no checkpoint was written yet)" in line
    assert not (tmp_path / "run" / "final").exists() and not list(
        (tmp_path / "run").glob("checkpoints/step-*")
    )


@pytest.fixture(scope="module")
def exploded(dataset: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run whose learning rate (1e30) blows the weights up: the loss turns NaN a few steps in."""
    tmp = tmp_path_factory.mktemp("exploded")
    cfg = _config(tmp, lr=1e30, warmup_steps=0, checkpoint_every=1, max_steps=6)
    # in this process: the exit code a process gets is the same (test_untrusted_run's train processes)
    r = ks_here(
        "train", "--config", cfg, "--data", dataset["final"], "--out", tmp / "run", "--precision", "no"
    )
    return {"r": r, "run": tmp / "run"}


def test_a_nan_loss_exits_3_through_the_cli_and_keeps_a_checkpoint(exploded: dict) -> None:
    r, run = exploded["r"], exploded["run"]
    assert r.returncode == 3, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    latest = checkpoint.RunPaths(run).latest()
    # the blow-up is caught at the first non-finite weight (before the loss turns NaN) or at the NaN loss
    assert latest is not None and str(latest) in line
    assert "weights are not finite" in line or "loss is nan" in line
    checkpoint.verify(latest)
    assert not (run / "final").exists()


def test_the_kept_checkpoint_after_a_nan_has_finite_weights(exploded: dict) -> None:
    from safetensors.torch import load_file

    latest = checkpoint.RunPaths(exploded["run"]).latest()
    assert latest is not None
    weights = load_file(str(latest / "model" / "model.safetensors"))
    assert all(bool(torch.isfinite(w).all()) for w in weights.values())


def test_layer_subset_student_copies_the_teachers_layers() -> None:
    from transformers import AutoModelForCausalLM

    from kimi_student.backends.embedded import smollm2_folder

    spec = load_spec("worker", "small")
    student = build_student(spec)
    teacher = AutoModelForCausalLM.from_pretrained(str(smollm2_folder()), dtype=torch.float32)
    layers = even_layers(30, 6)
    assert layers == [0, 6, 12, 17, 23, 29]
    ts, ss = teacher.state_dict(), student.state_dict()
    for new, old in enumerate(layers):
        k = "model.layers.{}.self_attn.q_proj.weight"
        assert torch.equal(ss[k.format(new)], ts[k.format(old)])
    assert torch.equal(ss["model.embed_tokens.weight"], ts["model.embed_tokens.weight"])
    assert sum(p.numel() for p in student.parameters()) == spec.n_params


def test_sparse_kd_from_a_kd_mix(toy_checkpoint: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Say {i}."}) + "\n" for i in range(6)))
    kd = tmp_path / "kd.jsonl"
    r = ks_here(
        "kd-mix",
        "--teacher",
        f"hf:{toy_checkpoint}",
        "--prompts",
        prompts,
        "--out",
        kd,
        "--max-new-tokens",
        6,
        "--top-logprobs",
        8,
        "--no-system",
    )
    assert r.returncode == 0, r.stderr
    spec = load_spec(_config(tmp_path, max_steps=3, checkpoint_every=0), "toy")
    res = T.train(spec, tmp_path / "run", kd=str(kd), precision="no")
    h = res["history"]
    assert all("kl_forward" in x and x["kl_forward"] > 0 and "ce_teacher" in x for x in h)
    assert "ce_ground_truth" not in h[0]  # no gold data: that term does not apply
    assert res["threads"] == torch.get_num_threads() <= available_cores()  # train.threads' policy applied


def test_precision_is_chosen_from_the_hardware() -> None:
    want = "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"
    assert T.pick_precision("auto") == want
    assert T.pick_precision("no") == "no"


def test_a_misspelt_config_key_is_refused_naming_file_key_and_known_keys(tmp_path: Path) -> None:
    cfg = _config(tmp_path, chekpoint_every=5)
    r = ks_here("train", "--config", cfg, "--data", tmp_path / "absent.jsonl", "--out", tmp_path / "run")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert f"{cfg}: train.chekpoint_every: unknown key (known: system_prompt, lr," in line
    assert "checkpoint_every" in line and not (tmp_path / "run").exists()
    for bad, field in (
        ({"loss": {"ce_gold": 1.0}}, "train.loss.ce_gold"),
        ({"seq_curriculum": [{"seq_len": 64, "until": 3}]}, "train.seq_curriculum[0].until"),
        ({"process_weights": {"tool": 2.0}}, "train.process_weights.tool"),
        ({"qat": {"weights": "int4", "start": 2}}, "train.qat.start"),
    ):
        with pytest.raises(InputError, match=rf"cfg\.yaml: {re.escape(field)}: unknown key"):
            TrainConfig.from_spec(load_spec(_config(tmp_path, **bad), "toy"))
    with pytest.raises(
        InputError, match=r"train\.qat\.weights: must be one of int8, int4, int4emb8, got 'int3'"
    ):
        TrainConfig.from_spec(load_spec(_config(tmp_path, qat={"weights": "int3"}), "toy"))


def test_init_from_starts_at_a_trained_checkpoint_and_qat_is_a_flag(
    dataset: dict[str, Path], toy_checkpoint: Path, tmp_path: Path
) -> None:
    """`--init-from` takes every layer of a checkpoint (at learning rate 0 the run saves them unchanged: the
    QAT grid is only where the forward runs, never in the weights); `--qat` refuses a scheme it lacks."""
    from safetensors.torch import load_file

    cfg = _config(tmp_path, max_steps=2, checkpoint_every=0)
    args = (
        "train",
        "--config",
        cfg,
        "--data",
        dataset["final"],
        "--precision",
        "no",
        "--init-from",
        toy_checkpoint,
    )
    r = ks_here(*args, "--out", tmp_path / "run", "--lr", "0", "--qat", "int8")
    assert r.returncode == 0, r.stderr
    before, after = (load_file(p / "model.safetensors") for p in (toy_checkpoint, tmp_path / "run" / "final"))
    assert set(after) <= set(before) and all(torch.equal(before[k], after[k]) for k in after)
    r = ks_here(*args, "--out", tmp_path / "bad", "--qat", "int3")
    assert (
        r.returncode == 2 and r.stderr.strip() == "error: --qat: unknown 'int3' (known: int8, int4, int4emb8)"
    )
    assert not (tmp_path / "bad").exists()
    # QAT as self-distillation: the checkpoint is its own teacher, forward KL the only term. At lr 0 the
    # student is the teacher on the INT8 grid: a small KL, which full precision brings to exactly 0
    for qat, out in (("int8", "self"), (None, "self_fp")):
        more = ("--qat", qat) if qat else ()
        r = ks_here(
            *args,
            "--out",
            tmp_path / out,
            "--lr",
            "0",
            "--teacher",
            toy_checkpoint,
            "--loss",
            "kl_forward=1",
            *more,
        )
        assert r.returncode == 0, r.stderr
    log = {out: _log(tmp_path / out) for out in ("self", "self_fp")}
    assert all("ce_ground_truth" not in row for rows in log.values() for row in rows)
    assert all(0 < row["kl_forward"] < 0.01 for row in log["self"])
    assert all(row["kl_forward"] == 0 for row in log["self_fp"])
    for bad, why in (("kl=1", "unknown term 'kl'"), ("kl_forward", "'kl_forward' is not TERM=WEIGHT")):
        r = ks_here(*args, "--out", tmp_path / "bad", "--loss", bad)
        assert r.returncode == 2 and why in r.stderr and not (tmp_path / "bad").exists()


def test_keep_checkpoints_zero_keeps_every_one_and_a_negative_count_is_refused(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    """`keep_checkpoints: 0` keeps every checkpoint (a learning curve to read step by step); a negative
    count is refused by name before anything is written (it once deleted the newest)."""
    args = ("train", "--data", dataset["final"], "--precision", "no", "--config")
    cfg = _config(tmp_path, max_steps=7, checkpoint_every=2, keep_checkpoints=0)
    r = ks_here(*args, cfg, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*"))
    assert kept == ["step-000002", "step-000004", "step-000006"]
    r = ks_here(*args, _config(tmp_path, keep_checkpoints=-1), "--out", tmp_path / "bad")
    assert r.returncode == 2 and "train.keep_checkpoints" in r.stderr and ">= 0" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_trainable_layers_trains_the_top_and_leaves_the_rest_as_they_were(
    dataset: dict[str, Path], toy_checkpoint: Path, tmp_path: Path
) -> None:
    """`trainable_layers: 1` of two, from a trained checkpoint: the embeddings (the tied head too) and the
    lower layer are saved bit for bit as they started, the top layer and the final norm moved; the loss
    still falls; more layers than the student has is refused with the key's name."""
    from safetensors.torch import load_file

    args = ("train", "--data", dataset["final"], "--precision", "no", "--config")
    cfg = _config(tmp_path, max_steps=4, checkpoint_every=0, lr=5e-3, trainable_layers=1)
    r = ks_here(*args, cfg, "--init-from", toy_checkpoint, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    before, after = (load_file(p / "model.safetensors") for p in (toy_checkpoint, tmp_path / "run" / "final"))
    moved = {k for k in after if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(("model.layers.1.", "model.norm.")) for k in moved)
    assert "model.layers.1.mlp.up_proj.weight" in moved and "model.norm.weight" in moved
    assert not any(k.startswith(("model.layers.0.", "model.embed_tokens.")) for k in moved)
    r = ks_here(*args, _config(tmp_path, trainable_layers=3), "--out", tmp_path / "bad")
    assert r.returncode == 2 and "train.trainable_layers" in r.stderr and "2 decoder layers" in r.stderr
    r = ks_here(*args, _config(tmp_path, trainable_layers=0), "--out", tmp_path / "bad")
    assert r.returncode == 2 and "train.trainable_layers" in r.stderr and ">= 1" in r.stderr


def test_qat_trains_on_the_grid_and_saves_full_precision_weights(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    """Two runs from the same start, one with INT4 QAT from step 2: step 1 alike (full precision in both),
    then apart (QAT's gradient is taken on the grid); the QAT run's saved weights are full precision, not
    the grid (the export quantizes them: test_quant.py shows the package holds exactly their grid)."""
    from safetensors.torch import load_file

    from kimi_student.export.quant import SCHEMES, fake_quantize

    runs = {}
    for name, qat in (("plain", None), ("qat", {"weights": "int4", "start_step": 1})):
        (tmp_path / name).mkdir()
        spec = load_spec(_config(tmp_path / name, max_steps=3, checkpoint_every=0, qat=qat), "toy")
        T.train(spec, tmp_path / name / "run", data=str(dataset["final"]), precision="no")
        runs[name] = [h["loss"] for h in _log(tmp_path / name / "run")]
    assert runs["qat"][0] == runs["plain"][0] and runs["qat"][1:] != runs["plain"][1:]
    w = load_file(tmp_path / "qat" / "run" / "final" / "model.safetensors")[
        "model.layers.0.mlp.up_proj.weight"
    ]
    assert not torch.equal(fake_quantize(w, SCHEMES["int4"]), w)


def test_config_defaults_are_the_trainers_historical_defaults(tmp_path: Path) -> None:
    p = tmp_path / "min.yaml"
    p.write_text(yaml.safe_dump({"role": "worker", "train": {"lr": 1e-3}, "sizes": {"toy": {"arch": TOY}}}))
    with pytest.raises(InputError, match="train: missing max_steps"):
        TrainConfig.from_spec(load_spec(p, "toy"))
    c = TrainConfig.from_spec(load_spec(p, "toy"), max_steps=7)
    # the `cfg.get(key, default)` defaults of train/trainer.py before TrainConfig
    assert (c.lr, c.max_steps, c.system_prompt, c.min_lr_ratio, c.warmup_steps, c.weight_decay) == (
        1e-3,
        7,
        True,
        0.1,
        0,
        0.0,
    )
    assert (c.batch_size, c.grad_accum, c.grad_clip, c.pack_truncate) == (4, 1, None, True)
    assert c.seq_curriculum == (CurriculumStage(seq_len=256),)
    assert c.loss == LossWeights(ce_teacher=1.0, ce_ground_truth=1.0)
    assert (c.loss.kl_forward, c.loss.jsd_beta, c.loss.temperature) == (0.0, 0.5, 1.0)
    assert (c.process_weights, c.checkpoint_every, c.keep_checkpoints, c.seed) == ({}, 0, 2, 0)


def test_an_unset_later_key_leaves_the_resume_seal_as_it_was(tmp_path: Path) -> None:
    """A run checkpointed before `trainable_layers` existed resumes: unset, the key is not in the seal; set,
    it is (a run may not resume under another recipe)."""
    from dataclasses import asdict

    from kimi_student.fingerprint import sha256_json

    spec = load_spec(_config(tmp_path), "toy")
    c = TrainConfig.from_spec(spec)
    before = {k: v for k, v in asdict(c).items() if k not in ("max_steps", "precision", "trainable_layers")}
    seal = sha256_json({"arch": spec.arch, "init": spec.init, "tokenizer": spec.tokenizer, "train": before})
    assert c.resume_sha256(spec) == seal
    top = TrainConfig.from_spec(load_spec(_config(tmp_path, trainable_layers=1), "toy"))
    assert top.resume_sha256(spec) != seal


@pytest.mark.parametrize(
    ("config", "sizes"),
    [
        ("worker", ("toy", "small", "full")),
        ("judge", ("toy", "smollm2", "full")),
        ("drafter", ("toy", "full")),
    ],
)
def test_every_shipped_config_is_a_valid_train_config(config: str, sizes: tuple[str, ...]) -> None:
    for size in sizes:
        c = TrainConfig.from_spec(load_spec(config, size))
        assert c.max_steps > 0 and c.seq_curriculum[-1].until_step is None
    toy = TrainConfig.from_spec(load_spec(config_path("toy_e2e.yaml"), "toy"))
    assert (toy.precision, toy.pack_truncate, toy.loss.ce_ground_truth) == ("no", False, 1.0)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "final" / "model.safetensors"))


def _mean_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return float(sum((a[k] - b[k]).abs().sum() for k in a) / sum(a[k].numel() for k in a))


def test_gradient_accumulation_is_one_step_over_the_bigger_batch(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    """batch 1 x accumulate 2 takes one AdamW step on the same two rows as batch 2: the same weights (to
    float noise); two steps of batch 1 move them about a step further."""
    one = {"max_steps": 1, "warmup_steps": 0, "checkpoint_every": 0, "seq_curriculum": [{"seq_len": 96}]}
    runs = {
        "batch2": {"batch_size": 2, "grad_accum": 1},
        "accum2": {"batch_size": 1, "grad_accum": 2},
    }
    w = {}
    for name, over in runs.items():
        T.train(
            load_spec(_config(tmp_path, **one, **over), "toy"),
            tmp_path / name,
            data=str(dataset["final"]),
            precision="no",
        )
        w[name] = _weights(tmp_path / name)
    spec = load_spec(_config(tmp_path, **{**one, "max_steps": 2, "min_lr_ratio": 1.0}, batch_size=1), "toy")
    T.train(spec, tmp_path / "two_steps", data=str(dataset["final"]), precision="no")
    w["two_steps"] = _weights(tmp_path / "two_steps")
    same, further = _mean_abs_diff(w["batch2"], w["accum2"]), _mean_abs_diff(w["batch2"], w["two_steps"])
    assert same < further / 50, (same, further)
    assert [h["step"] for h in _log(tmp_path / "accum2")] == [1]


def test_each_step_follows_the_schedule_and_the_curriculum_under_a_progress_bar(
    dataset: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = load_spec(_config(tmp_path, max_steps=7, checkpoint_every=0), "toy")
    T.train(spec, tmp_path / "run", data=str(dataset["final"]), precision="no", progress=True)
    err = capfd.readouterr().err
    assert "train worker" in err and "7/7" in err and "loss=" in err and "tok_s=" in err
    config = TrainConfig.from_spec(spec)
    log = _log(tmp_path / "run")
    assert [h["lr"] for h in log] == [config.lr_at(s) for s in range(7)]
    assert [h["seq_len"] for h in log] == [96] * 4 + [160] * 3
    per_step = [b["tokens"] - a["tokens"] for a, b in zip([{"tokens": 0}, *log], log)]
    assert all(2 * 96 * 0.9 <= t <= 2 * 96 for t in per_step[:4])  # packed rows, nearly full
    assert all(2 * 96 < t <= 2 * 160 for t in per_step[4:])
    quiet = load_spec(_config(tmp_path, max_steps=1, checkpoint_every=0), "toy")
    T.train(quiet, tmp_path / "quiet", data=str(dataset["final"]), precision="no", progress=False)
    assert "train worker" not in capfd.readouterr().err


def test_adaptive_threads_train_the_weights_one_thread_trains(
    dataset: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train.threads: adaptive` may change the count mid-run only where that cannot change the numbers:
    its weights equal a one-thread run's byte for byte, on a CPU where 1 and 2 threads agree (the governor
    then runs 2 from the first step: an idle machine) as on one where they do not (it stays at 1)."""
    from functools import partial

    idle = partial(T.ThreadGovernor, every=1, machine=lambda: 0.0)  # others never busy
    monkeypatch.setattr(T, "ThreadGovernor", idle)
    before, finals, reports = torch.get_num_threads(), [], []
    try:
        for name, extra in (("fixed", {}), ("adaptive", {"threads": "adaptive"})):
            torch.set_num_threads(1 if name == "fixed" else 2)
            spec = load_spec(_config(tmp_path, max_steps=3, checkpoint_every=0, batch_size=2, **extra), "toy")
            res = T.train(spec, tmp_path / name, data=str(dataset["final"]), precision="no")
            finals.append((tmp_path / name / "final" / "model.safetensors").read_bytes())
            reports.append(res["threads"])
    finally:
        torch.set_num_threads(before)
    assert finals[0] == finals[1]
    fixed, adaptive = reports
    assert fixed == 1
    if adaptive["threads_agree"]:  # the governor took both cores after its first look
        assert adaptive["adaptive"] == [(0, 1), (1, min(2, available_cores()))] or available_cores() == 1
    else:
        assert adaptive["adaptive"] == [(0, 1)]
