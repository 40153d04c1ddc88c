"""The folder a toy end-to-end run writes (`kimi-student toy-e2e --out DIR`), laid out once: the toy recipe
writes it, the runner smoke reads it. Paths only: nothing here touches the disk but `read_report`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_student.errors import InputError

PRIMARY_SHAPE = 128  # the shape whose metric is gated when it ran (else the first shape that ran)


@dataclass(frozen=True)
class ToyRun:
    """The paths of one run folder; `ToyRun.at(folder)` lays them out."""

    root: Path
    train_jsonl: Path  # data/train.jsonl: the real training items and their copies
    heldout_jsonl: Path  # data/heldout.jsonl
    bpe: Path  # the trained BPE (tokenizer.json form), wrapped as ...
    tokenizer: Path  # ... tokenizer/, an HF tokenizer folder with the chat template
    run: Path  # the trainer's run folder ...
    checkpoint: Path  # ... and the student it saves at the end, run/final
    report: Path  # report.json

    @classmethod
    def at(cls, root: str | Path) -> ToyRun:
        root = Path(root)
        data = root / "data"
        return cls(
            root,
            data / "train.jsonl",
            data / "heldout.jsonl",
            root / "bpe.json",
            root / "tokenizer",
            root / "run",
            root / "run" / "final",
            root / "report.json",
        )

    def coreml(self, seq_len: int) -> Path:
        """The folder of the shape's package (seq<S>.mlpackage) and its manifest."""
        return self.root / "coreml" / f"T{seq_len}"

    def predictions(self, seq_len: int) -> Path:
        return self.root / f"predictions_T{seq_len}.jsonl"

    def read_report(self) -> dict[str, Any]:
        try:
            return json.loads(self.report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(
                self.report, None, "report", f"no toy run here ({e}); run `make toy-e2e` first"
            ) from None


@dataclass(frozen=True)
class ToyFacts:
    """What a later recipe needs from a finished run's report: how to regenerate its items, and the shape
    whose package to use."""

    seed: int
    generated_items: int
    primary_seq_len: int | None  # the gated shape; None when no shape ran end to end

    @classmethod
    def of(cls, run: ToyRun) -> ToyFacts:
        rep = run.read_report()
        primary = rep["header"].get("primary_shape")  # "T128"
        return cls(
            int(rep["header"]["seed"]),
            int(rep["data"]["generated_items"]),
            rep["shapes"][primary]["seq_len"] if primary else None,
        )

    @property
    def package_seq_len(self) -> int:
        """The shape whose package to run: the primary one, else the default."""
        return self.primary_seq_len or PRIMARY_SHAPE
