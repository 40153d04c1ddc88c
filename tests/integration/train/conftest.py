"""The train tests seal checkpoints with a run key of their own: a key file in a temp config folder,
never the developer's ~/.config/kimi-student/run.key."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kimi_student.integrity import ENV


@pytest.fixture(scope="session", autouse=True)
def private_run_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (ENV, "XDG_CONFIG_HOME")}
    os.environ.pop(ENV, None)
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
