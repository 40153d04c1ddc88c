"""Session fixtures: the Llama under test and its conversions, made once per test session and shared
by every module here (coremltools conversions are the slow part)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

ct = pytest.importorskip("coremltools")

from tests.integration.export.mil.conversion import convert, ids_input, seeded  # noqa: E402
from tests.integration.export.mil.models import VOCAB, TinyLlama  # noqa: E402


@pytest.fixture(scope="session")
def pkgdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlpackages")


@pytest.fixture(scope="session")
def llama() -> nn.Module:
    return seeded(TinyLlama, maxlen=8)


@pytest.fixture(scope="session")
def token_ids() -> np.ndarray:
    return np.random.default_rng(0).integers(0, VOCAB, size=(1, 8)).astype(np.int32)


@pytest.fixture(scope="session")
def fp32_pkg(pkgdir: Path, llama: nn.Module, token_ids: np.ndarray) -> Path:
    path = pkgdir / "llama_fp32.mlpackage"
    convert(llama, (torch.from_numpy(token_ids),), path, [ids_input()])
    return path


@pytest.fixture(scope="session")
def fp16_pkg(pkgdir: Path, llama: nn.Module, token_ids: np.ndarray) -> Path:
    path = pkgdir / "llama_fp16.mlpackage"
    convert(
        llama,
        (torch.from_numpy(token_ids),),
        path,
        [ids_input()],
        precision=ct.precision.FLOAT16,
        target=ct.target.iOS18,
    )
    return path


@pytest.fixture(scope="session")
def llama_mlmodel(pkgdir: Path, llama: nn.Module, token_ids: np.ndarray) -> Any:
    """Converted float MLModels of `llama` by (target, precision), converted once per session."""
    cache: dict[tuple[str, str], Any] = {}

    def get(target: str, precision: str = "FLOAT32") -> Any:
        if (target, precision) not in cache:
            cache[target, precision] = convert(
                llama,
                (torch.from_numpy(token_ids),),
                pkgdir / f"llama_{target}_{precision}.mlpackage",
                [ids_input()],
                precision=getattr(ct.precision, precision),
                target=getattr(ct.target, target),
            )
        return cache[target, precision]

    return get
