"""Commands killed at each of their renames and removals in turn (os._exit in a forked child: no cleanup, as
under SIGKILL), not at a random moment as in test_kill_anywhere.py (whose seed 0 once fell between `train`
publishing its first checkpoint and LATEST: a window this finds by construction). After every kill the
same command finishes with the bytes of an uninterrupted run and leaves no temp behind; a training run
logs each step once and ends with the uninterrupted weights.

`extra` (a run a kill: ~6 min on 2 cores; `make test-slow`): the cheaper proofs in `make test` are test_kill_anywhere.py
(a kill at a random moment), test_untrusted_run.py's run killed between its first checkpoint and LATEST,
and test_outputs.py's probe and temp that a kill left."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kimi_student.models.student import load_spec
from kimi_student.train import trainer as T
from tests.integration.train.test_train import _config, _log
from tests.support import killed_at_rename, ks_here, temp_litter

pytestmark = [pytest.mark.slow, pytest.mark.extra]

Args = Callable[[Path], list[object]]


TIMINGS = {"seconds_per_single_case"}  # a report's measured latency: differs from run to run


def _without_timings(x: object) -> object:
    if isinstance(x, dict):
        return {k: _without_timings(v) for k, v in x.items() if k not in TIMINGS}
    return [_without_timings(v) for v in x] if isinstance(x, list) else x


def _files(root: Path, timed: tuple[str, ...]) -> dict[str, object]:
    """Every file under `root` and its bytes (`timed` ones, which hold timings: their names only; a JSON
    report: its content less `TIMINGS`)."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            body = p.read_bytes()
            if p.name in timed:
                body = None
            elif p.suffix == ".json" and any(k.encode() in body for k in TIMINGS):
                body = _without_timings(json.loads(body))
            out[str(p.relative_to(root))] = body
    return out


def _each_kill(tmp_path: Path, args: Args, timed: tuple[str, ...] = ()) -> int:
    """Kills `args`'s command (run in folder `d` as `args(d)`) at its 1st, 2nd, ... rename or removal until
    it runs to the end; after each, the rerun's files are an uninterrupted run's. The number of kills."""
    ref = tmp_path / "ref"
    ref.mkdir(parents=True)
    assert ks_here(*args(ref)).returncode in (0, 1)  # 1: gates that fail on a small set
    want = _files(ref, timed)
    assert want
    kills = 0
    while True:
        run = tmp_path / f"k{kills + 1}"
        run.mkdir()
        if not killed_at_rename(kills + 1, lambda: ks_here(*args(run))):  # noqa: B023 - called at once
            return kills
        kills += 1
        left = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
        r = ks_here(*args(run))
        assert r.returncode in (0, 1), (kills, left, r.stderr)
        assert _files(run, timed) == want, (kills, left)
        assert temp_litter(run) == [] and not list(run.rglob(".ks-probe*")), (kills, left)


@pytest.fixture
def same_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")  # reports compare byte for byte


def test_eval(dataset: dict[str, Path], tmp_path: Path, same_date: None) -> None:
    def args(d: Path) -> list[object]:
        return ["eval", "--runner", "verification_only", "--in", dataset["final"], "--out", d / "r.jsonl",
                "--report", d / "r.json"]  # fmt: skip

    assert _each_kill(tmp_path, args) > 5


def test_eval_hf_local(
    toy_checkpoint: Path, dataset: dict[str, Path], tmp_path: Path, same_date: None
) -> None:
    small = tmp_path / "small.jsonl"
    small.write_text("".join(dataset["final"].read_text().splitlines(keepends=True)[:9]))  # 8 items

    def args(d: Path) -> list[object]:
        return ["eval", "--runner", "hf_local", "--model", toy_checkpoint, "--in", small, "--out", d / "r.jsonl",
                "--report", d / "r.json", "--max-new-tokens", "8", "--batch-size", "2",
                "--fixtures", dataset["dir"] / "c.jsonl.fixtures"]  # fmt: skip

    assert _each_kill(tmp_path, args) > 5


def test_contextual_gen_and_judge_data(tmp_path: Path) -> None:
    gen = _each_kill(
        tmp_path / "gen", lambda d: ["contextual", "gen", "--n", "30", "--seed", "3", "--out", d / "c.jsonl"]
    )
    judge = _each_kill(
        tmp_path / "judge",
        lambda d: ["judge", "data", "--out", d / "j", "--train", "12", "--heldout", "4", "--seed", "2"],
    )
    assert gen > 5 and judge > 5


def test_drafter_data_and_train(toy_checkpoint: Path, tmp_path: Path) -> None:
    def data(d: Path) -> list[object]:  # two shards of 64 prompts
        return ["drafter", "data", "--model", toy_checkpoint, "--n", "40", "--seed", "1", "--answers", "data",
                "--out", d / "dd"]  # fmt: skip

    assert _each_kill(tmp_path / "data", data) >= 2
    dd = tmp_path / "data" / "ref" / "dd"
    train = _each_kill(
        tmp_path / "train",
        lambda d: ["drafter", "train", "--model", toy_checkpoint, "--data", dd, "--steps", "6", "--out", d / "dr"],
        timed=("train_log.jsonl",),
    )  # fmt: skip
    assert train >= 1


def test_kd_mix(tmp_path: Path) -> None:
    from tests.integration.test_kill_anywhere import _teacher
    from tests.support import serve_json

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"name a number {i}"}) + "\n" for i in range(24))
    )
    srv, url = serve_json(_teacher)
    try:
        kills = _each_kill(
            tmp_path / "kd",
            lambda d: [
                "kd-mix",
                "--teacher",
                url,
                "--prompts",
                prompts,
                "--out",
                d / "kd.jsonl",
                "--no-system",
            ],
        )
    finally:
        srv.shutdown()
    assert kills > 3


def test_judge_eval(tmp_path: Path, same_date: None) -> None:
    from tests.integration.arbiter.test_judge_pipeline import EVAL_ARGS, judge_run

    data, model = judge_run.__wrapped__(_Factory(tmp_path))  # type: ignore[attr-defined]
    kills = _each_kill(
        tmp_path / "eval",
        lambda d: ["judge", "eval", "--model", model, "--data", data / "heldout.jsonl", *EVAL_ARGS,
                   "--report", d / "caws_eval.json"],
    )  # fmt: skip
    assert kills > 3


class _Factory:
    """What the Judge fixture asks of pytest's tmp_path_factory, in a test's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        (p := self.root / name).mkdir()
        return p


@pytest.mark.parametrize(
    "kind", ["pytorch"]
)  # Core ML: the same writer, and ~100 kills of coremltools' saving
def test_export(kind: str, toy_checkpoint: Path, tmp_path: Path) -> None:
    """Over an earlier export: after each kill, the folder holds a manifest that its files match (the old
    export's or the new one's) or none, and the rerun leaves one export that `export verify` passes, no temp.
    (A .pt2 is not byte-identical from export to export: torch writes a random serialization id.)"""
    out = tmp_path / "x"

    def args(shapes: str) -> list[object]:
        return [
            "export",
            kind,
            "--model",
            toy_checkpoint,
            "--out",
            out,
            "--shapes",
            shapes,
            "--context",
            "64",
        ]

    assert ks_here(*args("32")).returncode == 0
    kills = 0
    while killed_at_rename(kills + 1, lambda: ks_here(*args("64"))):  # noqa: B023 - called at once
        kills += 1
        if (out / "manifest.json").exists():
            assert ks_here("export", "verify", out).returncode == 0, kills
        assert ks_here(*args("64")).returncode == 0 and ks_here("export", "verify", out).returncode == 0
        assert temp_litter(out) == [] and not list(out.rglob(".ks-probe*")), kills
        assert ks_here(*args("32")).returncode == 0  # the earlier export again, for the next kill
    assert kills > 3, kills


def test_train(dataset: dict[str, Path], tmp_path: Path) -> None:
    """Checkpoints at 2, 4 and 6 (the oldest pruned at 6: keep 2), the final at 8."""
    cfg = _config(tmp_path, max_steps=8, checkpoint_every=2)
    data = str(dataset["final"])
    T.train(load_spec(cfg, "toy"), tmp_path / "ref", data=data, precision="no")
    want = (tmp_path / "ref" / "final" / "model.safetensors").read_bytes()
    kills = 0
    while True:
        run = tmp_path / f"k{kills + 1}"

        def train(out: Path = run) -> None:
            T.train(load_spec(cfg, "toy"), out, data=data, precision="no")

        if not killed_at_rename(kills + 1, train):
            break
        kills += 1
        left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if "model" not in p.parts)
        T.train(load_spec(cfg, "toy"), run, data=data, precision="no")
        assert [h["step"] for h in _log(run)] == list(range(1, 9)), (kills, left)
        assert (run / "final" / "model.safetensors").read_bytes() == want, (kills, left)
        assert temp_litter(run) == [], (kills, left)
    assert kills > 10, kills
