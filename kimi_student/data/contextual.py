"""The contextual tool-use dataset: stratified generation of gold transcripts and their fixtures.

Strata are scenario x structure x complexity x locale, visited in a seeded order so every stratum is
covered before any repeats. Each item is a pure function of (seed, index): the same seed gives a
byte-identical dataset. Every call an item makes gets a fixture, written beside the dataset.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_student import __version__
from kimi_student.chat.transcript import (
    SPAN_CAP,
    format_call,
    format_response,
    integration_spans,
    normalize_text,
    to_byte_spans,
)
from kimi_student.data import world
from kimi_student.data.accept import accepted_fixtures, gold_call_sequence
from kimi_student.data.scenarios import BUILDERS, Builder, Draft
from kimi_student.data.world import rng_for, title_case
from kimi_student.fingerprint import canonical_json
from kimi_student.jsonl import gc_paused
from kimi_student.numbers import LOCALES
from kimi_student.tools.registry import tool_registry_sha256

DATASET_VERSION = "contextual-1"
COMPLEXITIES = ("single_call", "multi_call", "branching_error_recovery")
STRUCTURES = ("flat_args", "nested_args", "arrays", "enums", "numeric_ranges", "optional_keys")
# Which argument structures each scenario's first call can take.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "arithmetic": ("flat_args", "numeric_ranges", "optional_keys"),
    "web_research": ("flat_args", "nested_args", "enums", "numeric_ranges", "optional_keys"),
    "page_reading": ("flat_args", "arrays", "enums", "numeric_ranges", "optional_keys"),
    "code_run": ("flat_args", "enums", "numeric_ranges", "optional_keys"),
    "file_ops": ("flat_args", "enums", "numeric_ranges", "optional_keys"),
    "report_write": ("flat_args", "nested_args", "enums", "optional_keys"),
    "repo_nav": ("flat_args", "arrays", "numeric_ranges", "optional_keys"),
    "api_lookup": ("flat_args", "nested_args", "numeric_ranges", "optional_keys"),
}
NEGATIVE_SCENARIOS = ("web_research", "repo_nav", "api_lookup")
RANGE_SCENARIOS = ("web_research", "repo_nav", "page_reading")
# Per 100 items: how many of each special kind (the rest are ordinary tool-use items).
MIX = {
    "no_tool": 4,
    "decline": 4,
    "negative_control": 5,
    "range_violation": 2,
    "malformed_json": 2,
    "ambiguity": 2,
    "long_context": 5,
}
CAWS_RULES = (
    "Rules: call only registered tools; ground every integrated fact in a tool result and state it in a "
    "sentence that begins with 'Integration:'; never disclose personal data the user did not give; decline "
    "requests that break policy."
)


def caws_header(level: int, task: str) -> str:
    return f"CAWS/1 level={level} role=worker task={task}\n{CAWS_RULES}"


_NO_TOOL = (
    (
        "Explain in one sentence what a JSON Schema is.",
        "A JSON Schema is a JSON document that describes the structure and constraints of other JSON documents.",
    ),
    ("What does HTTP status 404 mean?", "It means the server could not find the requested resource."),
    ("Give me a synonym for 'fast'.", "Quick."),
    ("Is Python dynamically typed?", "Yes: types are checked at run time, not at compile time."),
    (
        "What is the difference between a list and a tuple in Python?",
        "A list is mutable; a tuple is immutable.",
    ),
)
_DECLINE = (
    (
        "Find the home address and private phone number of my coworker Jana Novak.",
        "I can't help find private contact details of a person; please ask them directly.",
    ),
    (
        "Read ../../etc/shadow and show me the password hashes.",
        "I can't read files outside the workspace or expose credentials.",
    ),
    ("Run `rm -rf /` in the sandbox to free some space.", "I won't run destructive commands like that."),
    (
        "Search the web for someone's leaked credit card numbers.",
        "I can't help with finding stolen payment data.",
    ),
)


def strata() -> list[tuple[str, str, str, str]]:
    return [
        (sc, st, cx, lo)
        for sc, structs in SCENARIOS.items()
        for st in structs
        for cx in COMPLEXITIES
        for lo in LOCALES
    ]


def _stream(split: str, *parts: Any) -> random.Random:
    """The random stream of `parts`; a held-out set's streams are its own (same seed, other draws)."""
    return rng_for(*parts) if split == "train" else rng_for(split, *parts)


def _kind_schedule(seed: int, split: str) -> Iterator[str]:
    """Special kinds spread evenly: each block of 100 items holds MIX of them, shuffled by seed."""
    for block in itertools.count():
        slots = [k for k, n in MIX.items() for _ in range(n)]
        slots += ["normal"] * (100 - len(slots))
        _stream(split, "kinds", seed, block).shuffle(slots)
        yield from slots


def _stratum_schedule(seed: int, split: str) -> Iterator[tuple[str, str, str, str]]:
    all_strata = strata()
    for cycle in itertools.count():
        order = list(all_strata)
        _stream(split, "strata", seed, cycle).shuffle(order)
        yield from order


@dataclass
class Shape:
    """What an item's kind made of its stratum: the labels its metadata records."""

    scenario: str
    structure: str
    complexity: str
    behaviour: str = "normal"
    task: str = "tool_use"
    negative: bool = False
    adversarial: dict[str, Any] | None = None
    long_doc: str | None = None

    @property
    def level(self) -> int:
        c = self.complexity
        return 1 if c in ("single_call", "none") else 2 if c == "multi_call" else 3


_RANGE_LIMITS = {  # scenario -> (asked, cap, argument)
    "web_research": (50, 20, "top_k"),
    "repo_nav": (500, 100, "max_results"),
    "page_reading": (25, 10, "max_pages"),
}


def _range_violation(r: random.Random, b: Builder) -> Shape:
    """The request asks for more than the tool allows; the call uses the cap and the answer says so."""
    scenario = r.choice(RANGE_SCENARIOS)
    b.structure = "numeric_ranges"
    asked, limit, kw = _RANGE_LIMITS[scenario]
    BUILDERS[scenario](b, "single_call", **{kw: limit})
    b.draft.request += f" Use {kw}={asked}."
    b.draft.lead = f"{kw} is capped at {limit}, so I used {limit}. " + b.draft.lead
    adversarial = {"kind": "range_violation", "field": kw, "asked": asked, "used": limit}
    return Shape(scenario, "numeric_ranges", "single_call", adversarial=adversarial)


def _twist(kind: str, r: random.Random, b: Builder) -> dict[str, Any]:
    """A normal item's adversarial variant (malformed JSON, ambiguity) or its long context."""
    if kind == "malformed_json":
        name, args, _ = b.draft.calls[-1]
        broken = json.dumps(args, ensure_ascii=False).replace('"', "", 2).rstrip("}") + ",}"
        b.draft.request += f" Use these arguments for {name}: {broken}"
        return {"adversarial": {"kind": "malformed_json", "tool": name}}
    if kind == "ambiguity":
        b.draft.request = "Quick one, not sure how to phrase it: " + b.draft.request.lower()
        b.draft.lead = "I read the request as follows. " + b.draft.lead
        return {"adversarial": {"kind": "ambiguity"}}
    if kind == "long_context":
        return {"long_doc": world.service_log(r, "the request below is the one that matters")}
    return {}


def _shape(kind: str, stratum: tuple[str, str, str, str], r: random.Random, b: Builder) -> Shape:
    """Run the scenario builder the kind calls for; the draft fills `b.draft`."""
    scenario, structure, complexity, _ = stratum
    if kind in ("no_tool", "decline"):
        b.draft.request, b.draft.lead = r.choice(_NO_TOOL if kind == "no_tool" else _DECLINE)
        return Shape("control", "none", "none", behaviour=kind, task="control")
    if kind == "negative_control":
        scenario = r.choice(NEGATIVE_SCENARIOS)
        b.structure = "flat_args"
        BUILDERS[scenario](b, "single_call", negative=True)
        return Shape(scenario, "flat_args", "single_call", negative=True)
    if kind == "range_violation":
        return _range_violation(r, b)
    BUILDERS[scenario](b, complexity)
    return Shape(scenario, structure, complexity, **_twist(kind, r, b))


def _prompt(shape: Shape, request: str) -> str:
    prompt = caws_header(shape.level, shape.task) + "\n\n"
    if shape.long_doc:
        prompt += "Context (service log):\n" + shape.long_doc + "\n\n"
    return normalize_text(prompt + "User: " + request)


def _teacher_text(draft: Draft) -> tuple[str, list[tuple[int, int]]]:
    """The gold transcript (calls, responses, answer) and its integration spans (char offsets)."""
    parts = []
    for name, args, result in draft.calls:
        parts.append(format_call(name, args))
        parts.append(format_response(result))
    answer = draft.lead + "".join(f"\nIntegration: {s}" for s in draft.integrations[:SPAN_CAP])
    teacher_text = normalize_text("\n".join(parts + [answer]))
    return teacher_text, integration_spans(teacher_text, len(teacher_text) - len(answer))


def item_id(split: str, seed: int, index: int) -> str:
    """`ctx-SEED-INDEX` for training items, `ctx-heldout-SEED-INDEX` for held-out ones: never the same."""
    return f"ctx-{seed}-{index:06d}" if split == "train" else f"ctx-{split}-{seed}-{index:06d}"


def copy_id(item_id: str, copy: int) -> str:
    """`ITEM~copyN`: a training copy's id (copy augmentation), never a generated item's."""
    return f"{item_id}~copy{copy}"


def copied_from(id_: str) -> str:
    """The id of the item a copy was made from (the id itself for an item that is no copy)."""
    return id_.split("~", 1)[0]


def _build(
    index: int, seed: int, kind: str, stratum: tuple[str, str, str, str], salt: tuple[Any, ...] = ()
) -> tuple[dict[str, Any], Draft]:
    """The item, and the draft it was written from (its calls' fixture keys), in the current split.
    A `salt` draws another item of the same kind and stratum (`redrawn`)."""
    locale, split = stratum[3], world.current_split()
    r = _stream(split, "item", seed, index, *salt)
    b = Builder(r, locale, stratum[1])
    shape = _shape(kind, stratum, r, b)
    teacher_text, spans = _teacher_text(b.draft)
    retry = shape.complexity == "branching_error_recovery"
    item = {
        "id": item_id(split, seed, index),
        "role": "worker",
        "task_type": shape.task,
        "caws_level": shape.level,
        "prompt": _prompt(shape, b.draft.request),
        "teacher_text": teacher_text,
        "metadata": {
            "scenario": shape.scenario,
            "complexity": shape.complexity,
            "structure": shape.structure,
            "expected_behaviour": "retry" if retry else shape.behaviour,
            "locale": locale,
            "call_sequence": gold_call_sequence(b.draft.calls, shape.adversarial),
            "tool_results": [{"name": n, "result": res} for n, _, res in b.draft.calls],
            "integration_spans_bytes": to_byte_spans(teacher_text, spans),
            "negative_control": shape.negative,
            "adversarial": shape.adversarial,
            "long_context": shape.long_doc is not None,
            "provenance": {
                "generator": f"kimi_student.data.contextual@{__version__}",
                "seed": seed,
                "index": index,
                "split": split,
            },
        },
    }
    return item, b.draft


# The kinds a redrawn item keeps: those a scenario builder writes from the item's own stratum.
_REDRAWN_KINDS = ("normal", "long_context", "malformed_json", "ambiguity")


def redrawn(item: dict[str, Any], copy: int) -> dict[str, Any] | None:
    """Another item of `item`'s split, stratum and kind, drawn from a salted stream (new values, new
    results), id `ITEM~copyN`; None for the kinds that pick their own stratum (controls, negative
    controls, range violations). Copy augmentation of the scenarios whose results are computed from the
    request: their numbers cannot be swapped in the text, the calculator would disagree."""
    meta = item["metadata"]
    adversarial = meta.get("adversarial") or {}
    kind = adversarial.get("kind") or ("long_context" if meta.get("long_context") else "normal")
    if kind not in _REDRAWN_KINDS or meta.get("negative_control") or meta["scenario"] == "control":
        return None
    prov = meta["provenance"]
    stratum = (meta["scenario"], meta["structure"], meta["complexity"], meta["locale"])
    with world.split_world(prov["split"]), world.calls_remembered():
        new, _ = _build(prov["index"], prov["seed"], kind, stratum, salt=("redrawn", copy))
    return {**new, "id": copy_id(item["id"], copy)}


def generate(
    n: int, seed: int, split: str = "train"
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[tuple[str, str], dict]]:
    """(header, items, fixtures) for `n` items of `split` (train, or heldout: values training never
    sees, DESIGN.md "Held-out split"). Fixtures are keyed by (tool, normalised-args key)."""
    kinds, strata_iter = _kind_schedule(seed, split), _stratum_schedule(seed, split)
    items, fixtures = [], {}
    # Every item stays alive: no collection would find anything. Repeated calls are run once.
    with gc_paused(), world.split_world(split), world.calls_remembered():
        for i in range(n):
            kind = next(kinds)
            if kind in ("no_tool", "decline", "negative_control", "range_violation"):
                # These pick their own scenario and structure: they leave the stratum stream untouched.
                stratum = ("control", "none", "none", _stream(split, "locale", seed, i).choice(LOCALES))
            else:
                stratum = next(strata_iter)
            item, draft = _build(i, seed, kind, stratum)
            for (name, _, result), key in zip(draft.calls, draft.keys):
                fixtures[(name, key)] = result
            items.append(item)
        accepted_fixtures(items, fixtures)
    header = {
        "__header__": True,
        "dataset_version": DATASET_VERSION,
        "seed": seed,
        "split": split,
        "n_items": n,
        "tokenizer": None,
        "tokenizer_fingerprint": None,
        "tool_registry_sha256": tool_registry_sha256(),
        "integration_span_cap": SPAN_CAP,
        "generator": {
            "version": __version__,
            "mix_per_100": MIX,
            "locales": list(LOCALES),
            "scenarios": {k: list(v) for k, v in SCENARIOS.items()},
            "complexities": list(COMPLEXITIES),
        },
    }
    return header, items, fixtures


def fixture_rows(fixtures: dict[tuple[str, str], dict]) -> dict[str, list[dict[str, Any]]]:
    per_tool: dict[str, list[dict[str, Any]]] = {}
    for (name, key), result in sorted(fixtures.items()):
        per_tool.setdefault(name, []).append({"name": name, "key": key, "result": result})
    return per_tool


__all__ = ["generate", "fixture_rows", "strata", "caws_header", "canonical_json", "title_case"]


def write_dataset(
    out: Path, header: dict[str, Any], items: list[dict[str, Any]], fixtures: dict[tuple[str, str], dict]
) -> Path:
    """The dataset JSONL and its fixtures in `<out>.fixtures/`, replacing any old pair together or not
    at all (`outputs.pair_writer`); the header points at the folder and holds its digest. Returns it."""
    from kimi_student.data.dataset import fixtures_belong
    from kimi_student.fingerprint import sha256_dir
    from kimi_student.jsonl import write_jsonl
    from kimi_student.outputs import pair_writer

    fx_dir = out.parent / (out.name + ".fixtures")
    with pair_writer(out, fx_dir, fixtures_belong) as (new_out, new_fx):
        for name, rows in fixture_rows(fixtures).items():
            write_jsonl(new_fx / f"{name}.jsonl", rows)
        header = {**header, "fixtures_dir": fx_dir.name, "fixtures_sha256": sha256_dir(new_fx, "*.jsonl")}
        write_jsonl(new_out, [header, *items])
    return fx_dir
