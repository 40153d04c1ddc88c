"""`kimi-student probes`: for each model, a linear probe per layer on the process step each token is being
written in, and on the tool a call's tokens belong to; held-out accuracy and macro-F1 per layer beside the
majority-class baseline, as report.json, table.md and probes.png in the output folder.

Examples come from a contextual dataset's gold conversations, built exactly as training builds them
(`ExampleBuilder`, the `request` wrapper); they split into probe-training and held-out examples by a seeded
permutation, so no conversation has tokens on both sides. Several models (say, the pretrained student and
the distilled one) are probed on the same examples and split: the table shows whether training moved where
the network represents "I am writing arguments".
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from kimi_student.errors import InputError
from kimi_student.fingerprint import sha256_file, weights_sha256
from kimi_student.jsonl import atomic_writer, write_json
from kimi_student.probes.features import hidden_features
from kimi_student.probes.labels import NO_TOOL, STEPS
from kimi_student.probes.linear import fit_and_score, majority

REPORT_VERSION = "1"


def _examples(model: Path, data: Path, items: int) -> list[Any]:
    from transformers import AutoTokenizer

    from kimi_student.train.examples import ExampleBuilder, load_examples

    builder = ExampleBuilder(AutoTokenizer.from_pretrained(str(model)), {})
    return load_examples(builder, data, None, limit=items, system=False)


def split(n: int, heldout_share: float, seed: int) -> np.ndarray:
    """(n,) bool: True for the held-out examples (a seeded permutation's first share)."""
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).permutation(n)[: max(1, round(n * heldout_share))]] = True
    return held


def run_probes(
    models: list[Path],
    data: Path,
    out: Path,
    items: int = 120,
    heldout_share: float = 0.3,
    seed: int = 0,
    dtype: str = "fp32",
    progress: bool = False,
) -> dict[str, Any]:
    from tqdm import tqdm

    examples = _examples(models[0], data, items)
    tools = sorted({name for e in examples for name, _, _ in e.calls})
    held = split(len(examples), heldout_share, seed)
    rows: list[dict[str, Any]] = []
    baseline: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for model in models:
        if sha256_file(model / "tokenizer.json") != sha256_file(models[0] / "tokenizer.json"):
            own = _examples(model, data, items)
            if [e.input_ids.tolist() for e in own] != [e.input_ids.tolist() for e in examples]:
                raise InputError(
                    model, None, "tokenizer.json", f"splits the examples differently from {models[0]}'s"
                )
        weights = weights_sha256(model)  # hashed once: the cache key and the report
        f = hidden_features(model, weights, examples, tools, out / "cache", dtype, progress)
        test = held[f.item]
        in_call = f.tool != NO_TOOL
        tasks = {
            "step": (np.ones(len(f.step), bool), f.step, len(STEPS)),
            "tool": (in_call, f.tool, max(1, len(tools))),
        }
        counts = {
            "train_tokens": int((~test).sum()),
            "heldout_tokens": int(test.sum()),
            "step_train": {s: int(((f.step == i) & ~test).sum()) for i, s in enumerate(STEPS)},
            "step_heldout": {s: int(((f.step == i) & test).sum()) for i, s in enumerate(STEPS)},
            "tool_heldout_tokens": int((in_call & test).sum()),
        }
        baseline = {k: asdict(majority(y[m & ~test], y[m & test])) for k, (m, y, _) in tasks.items()}
        layers = []
        for layer in tqdm(range(f.states.shape[1]), desc=f"probes {model.name}", disable=not progress):
            x = f.states[:, layer]
            row: dict[str, Any] = {"layer": layer}
            for k, (m, y, n) in tasks.items():
                row[k] = asdict(fit_and_score(x[m & ~test], y[m & ~test], x[m & test], y[m & test], n))
            layers.append(row)
        best = {k: max(layers, key=lambda r, k=k: r[k]["macro_f1"]) for k in tasks}
        rows.append(
            {
                "model": str(model),
                "weights_sha256": weights,
                "layers": layers,
                "best": {k: {"layer": b["layer"], **b[k]} for k, b in best.items()},
            }
        )
    report = {
        "header": {
            "report_version": REPORT_VERSION,
            "report": "probes",  # what wrote it (report_diff.report_kind)
            "dataset": str(data),
            "dataset_sha256": sha256_file(data),
            "examples": len(examples),
            "heldout_examples": int(held.sum()),
            "seed": seed,
            "dtype": dtype,
            "steps": list(STEPS),
            "tools": tools,
            "label_position": "the state at t - 1, which writes token t",
        },
        "counts": counts,
        "baseline": baseline,
        "models": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    with atomic_writer(out / "table.md") as fh:
        fh.write(table(report))
    plot(report, out / "probes.png")
    return report


def label(model: str) -> str:
    """A model's short name: its folder, with the run's folder when that is `final` (runs/x/final -> x/final)."""
    p = Path(model)
    return f"{p.parent.name}/{p.name}" if p.name == "final" else p.name


def table(report: dict[str, Any]) -> str:
    """Per model, per layer: held-out accuracy and macro-F1 of both probes, the baseline first."""
    b = report["baseline"]
    lines = [
        "| model | layer | step acc | step macro-F1 | tool acc | tool macro-F1 |",
        "|---|---|---|---|---|---|",
        f"| majority class | - | {b['step']['accuracy']:.4f} | {b['step']['macro_f1']:.4f} | "
        f"{b['tool']['accuracy']:.4f} | {b['tool']['macro_f1']:.4f} |",
    ]
    for m in report["models"]:
        name = label(m["model"])
        for r in m["layers"]:
            lines.append(
                f"| {name} | {r['layer']} | {r['step']['accuracy']:.4f} | {r['step']['macro_f1']:.4f} | "
                f"{r['tool']['accuracy']:.4f} | {r['tool']['macro_f1']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Held-out macro-F1 per layer, one line per model, the majority baseline dashed (PNG, written whole)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, task, title in zip(axes, ("step", "tool"), ("process step", "tool of the call")):
        for m in report["models"]:
            ys = [r[task]["macro_f1"] for r in m["layers"]]
            ax.plot(range(len(ys)), ys, marker="o", markersize=3, label=label(m["model"]))
        ax.axhline(report["baseline"][task]["macro_f1"], linestyle="--", color="grey", label="majority class")
        ax.set_title(f"{title}: held-out macro-F1")
        ax.set_xlabel("layer (0: embeddings)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_writer(path, "wb") as fh:  # PNG metadata carries no date: the same report, the same bytes
        fig.savefig(fh, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
