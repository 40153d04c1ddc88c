"""train.state: a checkpoint's training state round-trips exactly through safetensors + JSON, and reading
it never unpickles: a planted pickle is refused and its code never runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kimi_student.manifest import ManifestError
from kimi_student.train.state import META, TENSORS, TrainState, read_state, write_state


class Planted:
    """Unpickling this runs `open(marker, "w")`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def _state() -> TrainState:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    for _ in range(2):
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    history = [{"step": 1, "loss": 0.1 + 0.2, "lr": 1e-3 / 3}, {"step": 2, "loss": 2.0 / 3, "lr": 7e-4}]
    return TrainState(2, opt.state_dict(), {"epoch": 1, "pos": 7}, history, torch.get_rng_state())


def test_the_state_round_trips_exactly(tmp_path: Path) -> None:
    s = _state()
    write_state(tmp_path, s)
    assert sorted(p.name for p in tmp_path.iterdir()) == [META, TENSORS]
    r = read_state(tmp_path)
    assert (r.step, r.stream, r.history) == (s.step, s.stream, s.history)
    assert torch.equal(r.torch_rng, s.torch_rng)
    assert r.optimizer["param_groups"] == s.optimizer["param_groups"]
    assert r.optimizer["param_groups"][0]["betas"] == (0.9, 0.95)
    assert r.optimizer["state"].keys() == s.optimizer["state"].keys()
    for pid, per in s.optimizer["state"].items():
        assert per.keys() == r.optimizer["state"][pid].keys()
        for k, v in per.items():
            got = r.optimizer["state"][pid][k]
            assert got.dtype == v.dtype and torch.equal(got, v), (pid, k)
    # a fresh optimizer loads it
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    torch.optim.AdamW(model.parameters(), lr=1e-3).load_state_dict(r.optimizer)


def test_a_pickle_in_place_of_the_state_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    live = tmp_path / "live.pt"
    torch.save({"step": 2, "optimizer": Planted(marker)}, live)
    torch.load(live, weights_only=False)  # the payload is live: the old loader would have run it
    assert marker.exists()
    marker.unlink()
    write_state(tmp_path, _state())
    torch.save({"step": 2, "optimizer": Planted(marker)}, tmp_path / TENSORS)
    with pytest.raises(ManifestError, match=r"state\.safetensors: not a safetensors file"):
        read_state(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (lambda m: m.update(step=0), "step: expected a positive integer"),
        (lambda m: m.update(stream={"epoch": 0}), "stream: expected {epoch, pos}"),
        (lambda m: m["history"].pop(), "history: expected 2 records"),
        (lambda m: m.update(format="x"), "not a training state of format"),
        (lambda m: m["optimizer"].update(values=[]), "optimizer: expected"),
    ],
)
def test_a_state_json_of_another_shape_is_refused(tmp_path: Path, edit: object, what: str) -> None:
    write_state(tmp_path, _state())
    meta = json.loads((tmp_path / META).read_text())
    edit(meta)  # type: ignore[operator]
    (tmp_path / META).write_text(json.dumps(meta))
    with pytest.raises(ManifestError, match=rf"state\.json: {what}"):
        read_state(tmp_path)
