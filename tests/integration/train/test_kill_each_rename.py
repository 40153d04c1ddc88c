"""A training run killed at each of its renames and removals in turn (os._exit in a forked child: no cleanup, as
under SIGKILL), not at a random moment (test_kill_anywhere's seed 0 took a window between publishing the
first checkpoint and LATEST that this finds by construction): after every kill the same command resumes or
starts again, logs each step once and ends with an uninterrupted run's weights, leaving no temp behind.
Slow tier (one training a kill): `make test-slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimi_student.models.student import load_spec
from kimi_student.train import trainer as T
from tests.integration.train.test_train import _config, _log
from tests.support import killed_at_rename, temp_litter

pytestmark = [pytest.mark.slow]


def test_a_run_killed_at_each_rename_or_removal_resumes_to_the_uninterrupted_weights(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    # checkpoints at 2, 4 and 6 (the oldest pruned at 6, keep 2), the final at 8
    cfg = _config(tmp_path, max_steps=8, checkpoint_every=2)
    spec = load_spec(cfg, "toy")
    data = str(dataset["final"])
    T.train(spec, tmp_path / "ref", data=data, precision="no")
    want = (tmp_path / "ref" / "final" / "model.safetensors").read_bytes()
    step, kills = 1, []
    while True:
        run = tmp_path / f"k{step}"
        if not killed_at_rename(step, lambda: T.train(load_spec(cfg, "toy"), run, data=data, precision="no")):  # noqa: B023
            break  # ran to the end: every rename and removal was a kill's moment
        kills.append(
            (step, sorted(str(p.relative_to(run)) for p in run.rglob("*") if "model" not in p.parts))
        )
        T.train(load_spec(cfg, "toy"), run, data=data, precision="no")
        assert [h["step"] for h in _log(run)] == list(range(1, 9)), (step, kills[-1])
        assert (run / "final" / "model.safetensors").read_bytes() == want, (step, kills[-1])
        assert temp_litter(run) == [], (step, kills[-1])
        step += 1
    assert step > 10, step  # the run renames and removes more than a few things
