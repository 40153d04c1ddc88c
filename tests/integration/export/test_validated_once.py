"""`convert` skips coremltools' whole-program validation after each pass and validates the finished program
once: the check still runs (and still refuses a broken program), exactly once, and the library is left as
it was, even when the conversion fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

ct = pytest.importorskip("coremltools")

from coremltools.converters.mil.mil.program import Program  # noqa: E402

from kimi_student.export.coreml import convert, convert_validated_once, load_mil, save_decoder  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export's own deprecation chatter


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(32, 8)
        self.head = nn.Linear(8, 32)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(input_ids))


def _program(n: int = 4) -> torch.export.ExportedProgram:
    torch.manual_seed(0)
    ids = torch.arange(n, dtype=torch.int32)[None]
    return torch.export.export(Tiny().eval(), (ids,)).run_decompositions({})


def test_the_finished_program_is_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    full, seen = Program.validate, []

    def counted(self: Program, check_essential_scope: bool = False) -> None:
        seen.append(check_essential_scope)
        full(self, check_essential_scope=check_essential_scope)

    monkeypatch.setattr(Program, "validate", counted)
    convert(_program(), "full", weights="fp16")
    assert seen == [True]  # once, with the scope check the library's own last validation makes
    assert Program.validate is counted  # put back


def test_a_broken_finished_program_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Program, check_essential_scope: bool = False) -> None:
        raise ValueError("invalid program")

    monkeypatch.setattr(Program, "validate", broken)
    with pytest.raises(ValueError, match="invalid program"):
        convert(_program(), "full", weights="fp16")


def test_the_library_is_restored_when_the_conversion_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    full = Program.validate

    def failing(*args: object, **kwargs: object) -> None:  # a conversion that dies mid-way (fault injected)
        assert Program.validate is not full  # the per-pass check is off while it runs
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(ct, "convert", failing)
    with pytest.raises(RuntimeError, match="conversion failed"):
        convert_validated_once(_program())
    assert Program.validate is full


def test_a_multifunction_package_is_validated_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    parts = {q: convert(_program(q), "full", weights="fp16") for q in (1, 4)}
    full, seen = Program.validate, []

    def counted(self: Program, check_essential_scope: bool = False) -> None:
        seen.append((sorted(self.functions), check_essential_scope))
        full(self, check_essential_scope=check_essential_scope)

    monkeypatch.setattr(Program, "validate", counted)
    save_decoder(parts, tmp_path / "d.mlpackage")
    assert seen == [(["chunk4", "main"], True)]  # the merged program as written, once
    assert Program.validate is counted
    assert sorted(load_mil(tmp_path / "d.mlpackage").functions) == ["chunk4", "main"]

    def broken(self: Program, check_essential_scope: bool = False) -> None:
        raise ValueError("invalid program")

    monkeypatch.setattr(Program, "validate", broken)
    with pytest.raises(ValueError, match="invalid program"):
        save_decoder(parts, tmp_path / "e.mlpackage")
    assert not (tmp_path / "e.mlpackage").exists()  # not left behind
