"""What a run is, defined once. Its inputs are known before any runner is built; its runner's facts once
a worker has built the runner. The report header, the first line of a shard's results, what the shards of
one run must agree on and the resume key of its part files all derive from these two."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from kimi_student.chat.prompt import prompt_wrapper_sha256
from kimi_student.errors import InputError
from kimi_student.eval.report import REPORT_VERSION, created_at
from kimi_student.eval.runners.base import Runner, RunnerSpec
from kimi_student.fingerprint import code_version, sha256_file, sha256_json
from kimi_student.tokenizer import TokenizerHandle
from kimi_student.tools.broker import fixtures_sha256
from kimi_student.tools.registry import tool_registry_sha256


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The keys of `a` whose values `b` does not share, in `a`'s order."""
    return [k for k in a if b.get(k) != a[k]]


@dataclass(frozen=True)
class RunInputs:
    """What a run reads besides its runner: every scored row depends on all of it."""

    dataset_sha256: str
    tool_registry_sha256: str
    tokenizer_fingerprint: str
    fixtures_sha256: str
    seed: Any  # the dataset's generation seed, as its header gives it
    code_version: str

    @classmethod
    def of(
        cls, dataset: Path, dataset_header: dict[str, Any], tok: TokenizerHandle, fixture_dirs: list[Path]
    ) -> RunInputs:
        return cls(
            dataset_sha256=sha256_file(dataset),
            tool_registry_sha256=tool_registry_sha256(),
            tokenizer_fingerprint=tok.fingerprint,
            fixtures_sha256=fixtures_sha256(fixture_dirs),
            seed=dataset_header.get("seed"),
            code_version=code_version(),
        )

    def resume_key(self, spec: RunnerSpec, shard: tuple[int, int] | None) -> dict[str, Any]:
        """What the part files of an unfinished run must have been made with for their rows to be reused:
        these inputs, the runner as asked for and the shard (the runner as built is checked by its facts)."""
        predictions = spec.predictions
        return {
            **asdict(self),
            "runner": spec.name,
            "runner_options": spec.options.to_json(),
            "predictions_sha256": sha256_file(predictions)
            if predictions and Path(predictions).is_file()
            else None,
            "shard": list(shard) if shard else None,
        }


@dataclass(frozen=True)
class RunnerFacts:
    """What a built runner says it is: the model half of a run's identity."""

    runner: str
    model_fingerprint: str
    prompt_wrapper_sha256: str
    decoding: dict[str, Any]

    @classmethod
    def of(cls, runner: Runner) -> RunnerFacts:
        return cls(
            runner=runner.name,
            model_fingerprint=runner.model_fingerprint,
            prompt_wrapper_sha256=prompt_wrapper_sha256(runner.prompt_wrapper),
            decoding=runner.decoding,
        )

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RunnerFacts:
        return cls(**{f.name: obj[f.name] for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def differences(self, other: RunnerFacts) -> list[str]:
        return _differences(self.to_json(), other.to_json())

    @property
    def proves(self) -> str:
        return "scorer (gold text), not a model" if self.runner == "verification_only" else "model"


@dataclass(frozen=True)
class RunIdentity:
    """What a run is, as its report states it: the runner as built, the inputs, the dataset's size."""

    facts: RunnerFacts
    inputs: RunInputs
    items_total: int
    report_version: str = REPORT_VERSION

    def _flat(self) -> dict[str, Any]:
        """Every field by its header name, in the order shards are compared: the dataset first (the likeliest
        mix-up names itself), then the runner, then the other inputs."""
        return {
            "dataset_sha256": self.inputs.dataset_sha256,
            "items_total": self.items_total,
            "report_version": self.report_version,
            **self.facts.to_json(),
            **asdict(self.inputs),
        }

    def header(self) -> dict[str, Any]:
        """The report header, created now."""
        flat = self._flat()
        del flat["items_total"]
        return {**flat, "created_at": created_at(), "proves": self.facts.proves}

    def shard_header(
        self, shard: tuple[int, int], positions: list[int], problems: list[str]
    ) -> dict[str, Any]:
        """The first line of a shard's results: what merge needs (the run's header, and where this shard's
        rows go)."""
        return {
            "__header__": True,
            "shard": list(shard),
            "positions": positions,
            "fingerprint_problems": problems,
            "proves": self.facts.proves,
            **self._flat(),
        }

    @classmethod
    def from_shard_header(cls, header: dict[str, Any], path: Path) -> RunIdentity:
        """The identity a shard's first line states (see `shard_header`)."""
        names = [f.name for f in (*fields(RunnerFacts), *fields(RunInputs))]
        missing = [k for k in (*names, "items_total", "report_version") if k not in header]
        if missing:
            raise InputError(path, 1, missing[0], "missing field (not a shard's results)")
        return cls(
            RunnerFacts.from_json(header),
            RunInputs(**{f.name: header[f.name] for f in fields(RunInputs)}),
            header["items_total"],
            header["report_version"],
        )

    def row_identity(self) -> str:
        """What the results rows of this run are sealed as (eval/rows.py), each at its dataset position: a
        row moved to another run or position no longer checks. Not the shard: a shard's rows are the
        merged run's, byte for byte."""
        return f"kimi-student eval row {sha256_json(self._flat())}"

    def differences(self, other: RunIdentity) -> list[str]:
        """The fields on which two runs differ, dataset first."""
        return _differences(self._flat(), other._flat())

    def agrees_with(self, other: RunIdentity) -> bool:
        return not self.differences(other)
