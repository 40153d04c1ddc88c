"""Runner names to runners: the one place a `--runner` value is resolved."""

from __future__ import annotations

from kimi_student.errors import KimiStudentError
from kimi_student.eval.runners.base import Runner, RunnerSpec
from kimi_student.eval.runners.gold import Predictions, VerificationOnly
from kimi_student.eval.runners.model import MODEL_RUNNERS, ModelRunner
from kimi_student.tools.broker import ToolBroker


def make_runner(spec: RunnerSpec, dataset_sha256: str, broker: ToolBroker) -> Runner:
    """`dataset_sha256` is the gold runner's model; `broker` replays the calls of model runners' tool loops
    (the scorer's broker: lookups only)."""
    if spec.name == "verification_only":
        return VerificationOnly(dataset_sha256)
    if spec.name == "predictions":
        if not spec.predictions:
            raise KimiStudentError("--runner predictions needs --predictions FILE")
        return Predictions(spec.predictions)
    if spec.name in MODEL_RUNNERS:
        return ModelRunner(spec.name, spec.options, broker)
    known = ", ".join(("verification_only", "predictions", *MODEL_RUNNERS))
    raise KimiStudentError(f"unknown runner {spec.name!r} (available: {known})")
