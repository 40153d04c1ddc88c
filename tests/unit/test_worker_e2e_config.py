"""`kimi-student worker-e2e` refuses a config it cannot run before any work: one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kimi_student.errors import InputError
from kimi_student.recipes.worker_e2e import CONFIG, read_config


def test_the_packaged_config_reads() -> None:
    cfg = read_config(CONFIG)
    assert cfg["data"]["heldout_items"] >= 300 and cfg["train"]["system_prompt"] is False


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("kd", "top_k", None),
        ("kd", "items", 0),
        ("data", "train_items", 0),
        ("decode", "max_turns", "4"),
        ("decode", "batch_size", True),
        ("data", "copy_augment", -1),
        ("parity", "coreml_items", -1),
        ("parity", "openai_http_items", "2"),
    ],
)
def test_a_bad_integer_is_refused_naming_it(tmp_path: Path, section: str, key: str, value: object) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg[section][key] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match=rf"{section}\.{key}: must be a (positive|non-negative) integer"):
        read_config(path)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("shapes", [], "a list of sequence lengths"),
        ("shapes", [512, "1024"], "a list of sequence lengths"),
        ("shapes", 512, "a list of sequence lengths"),
        ("chunks", [1, 8], r"a list of token counts in \[2, 1024\]"),
        ("chunks", [2048], r"a list of token counts in \[2, 1024\]"),
        ("chunks", None, r"a list of token counts in \[2, 1024\]"),
    ],
)
def test_a_bad_export_setting_is_refused_naming_it(
    tmp_path: Path, key: str, value: object, says: str
) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["export"][key] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match=rf"export\.{key}: must be {says}"):
        read_config(path)


@pytest.mark.parametrize("value", [1.5, -0.1, None, True])
def test_a_bad_parity_tolerance_is_refused_naming_it(tmp_path: Path, value: object) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["parity"]["max_delta_f1"] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match=r"parity\.max_delta_f1: must be a number in \[0, 1\]"):
        read_config(path)


@pytest.mark.parametrize("size", ["teacher", "worker"])
def test_a_missing_model_is_refused_naming_it(tmp_path: Path, size: str) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    del cfg["sizes"][size]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match=rf"sizes\.{size}: missing"):
        read_config(path)


def test_the_student_is_the_base_model_distilled_from_the_teacher() -> None:
    """Layer subsets of the trained teacher did not copy (README): the student is SmolLM2-135M whole, the
    teacher's arch and tokenizer (logit KD needs one vocabulary), trained on the teacher's scores."""
    cfg = read_config(CONFIG)
    teacher, worker = cfg["sizes"]["teacher"], cfg["sizes"]["worker"]
    assert worker["init"] == teacher["init"] == {"kind": "layer_subset", "teacher": "smollm2"}
    assert worker["arch"]["num_hidden_layers"] == teacher["arch"]["num_hidden_layers"] == 30
    assert worker["train"]["loss"]["kl_forward"] > 0 and worker["train"]["loss"]["ce_teacher"] > 0
    assert "kl_forward" not in teacher["train"]["loss"]


@pytest.mark.parametrize(("key", "value"), [("copy_words", "random"), ("copy_numbers", "random")])
def test_an_unknown_copy_source_is_refused_naming_it(tmp_path: Path, key: str, value: str) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"][key] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match=rf"data\.{key}: must be one of training, "):
        read_config(path)
    cfg["data"][key] = "training"
    path.write_text(yaml.safe_dump(cfg))
    assert read_config(path)["data"][key] == "training"
