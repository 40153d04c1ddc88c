"""The contextual tool-use dataset: stratified generation of gold transcripts and their fixtures.

Strata are scenario x structure x complexity x locale, visited in a seeded order so every stratum is
covered before any repeats. Each item is a pure function of (seed, index): the same seed gives a
byte-identical dataset. Every call an item makes gets a fixture, written beside the dataset.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from kimi_student.data.world import rng_for, title_case
from kimi_student.fingerprint import canonical_json
from kimi_student.jsonl import gc_paused
from kimi_student.numbers import LOCALES, format_number
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


@dataclass
class Draft:
    """What a scenario builder produces for one item."""

    request: str
    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # each call's fixture key
    lead: str = ""
    integrations: list[str] = field(default_factory=list)


class Builder:
    """Runs calls against the simulated world while a scenario writes its item."""

    def __init__(self, r: random.Random, locale: str, structure: str):
        self.r, self.locale, self.structure = r, locale, structure
        self.draft = Draft("")

    def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        key, result = world.run_call(name, args)
        self.draft.keys.append(key)  # fixture_key(name, args)
        self.draft.calls.append((name, args, result))
        return result

    def num(self, value: float | int, decimals: int | None = None) -> str:
        return format_number(value, self.locale, decimals)

    def s(self, *names: str) -> bool:
        return self.structure in names


# ---- scenarios: each writes the request, makes its calls and states what it integrated ------------------


def _arithmetic(b: Builder, complexity: str) -> None:
    r = b.r
    price, qty, rate = round(r.uniform(100, 9999), 2), r.randint(2, 40), r.choice((5, 7, 12.5, 19, 20))
    expr = f"{price} * {qty}"
    args: dict[str, Any] = {"expression": expr}
    if b.s("numeric_ranges", "optional_keys"):
        args["precision"] = 2
    b.draft.request = f"An order has {qty} units at {b.num(price, 2)} each. What is the subtotal" + (
        f", and the total with {b.num(rate)}% tax?" if complexity == "multi_call" else "?"
    )
    if complexity == "branching_error_recovery":
        bad = b.call("math.eval", {**args, "expression": f"{price} x {qty}"})
        assert not bad["ok"]
    sub = b.call("math.eval", args)["value"]
    b.draft.lead = "I computed it with the calculator."
    b.draft.integrations.append(f"The subtotal is {b.num(sub, 2)}.")
    if complexity == "multi_call":
        tot = b.call("math.eval", {"expression": f"{sub} * (1 + {rate}/100)", "precision": 2})["value"]
        b.draft.integrations.append(f"With {b.num(rate)}% tax the total is {b.num(tot, 2)}.")


def _query(r: random.Random) -> str:
    return f"{r.choice(world.SUBJECTS)} {r.choice(world.ASPECTS)}"


def _web_research(b: Builder, complexity: str, negative: bool = False, top_k: int | None = None) -> None:
    r = b.r
    q = _query(r) if not negative else f"{r.choice(world.EMPTY_QUERY_WORDS)} {r.choice(world.SUBJECTS)}"
    args: dict[str, Any] = {"query": q}
    if b.s("nested_args"):
        args["filters"] = {"site": r.choice(world.HOSTS), "recency": r.choice(("week", "month", "year"))}
    if b.s("enums"):
        args["lang"] = "en"
        args["filters"] = {"recency": r.choice(("day", "week", "any"))}
    if b.s("numeric_ranges", "optional_keys") or top_k:
        args["top_k"] = top_k or r.randint(2, 10)
    b.draft.request = f"Find sources about {q}."
    if complexity == "branching_error_recovery":
        b.call("web.crawl", {"url": f"https://{r.choice(world.HOSTS)}/{world.slug(q)}/missing"})
    res = b.call("web.search", args)
    if negative:
        b.draft.lead = "The search returned no results, so I have nothing to report from the tools."
        return
    top = res["results"][0]
    b.draft.lead = f"I searched for {q}."
    b.draft.integrations.append(f'The top result is "{top["title"]}" at {top["url"]}.')
    if complexity == "multi_call":
        page = b.call("web.crawl", {"url": top["url"]})
        b.draft.integrations.append(f"That page states: {page['text'].splitlines()[0]}.")
    elif len(res["results"]) > 1:
        b.draft.integrations.append(f'Another source is "{res["results"][1]["title"]}".')


def _page_reading(b: Builder, complexity: str, max_pages: int | None = None) -> None:
    r = b.r
    topic = r.choice(world.SUBJECTS)
    url = f"https://{r.choice(world.HOSTS)}/{world.slug(topic)}"
    args: dict[str, Any] = {"url": url}
    if b.s("arrays", "enums"):
        args["include"] = ["text", "links"] if b.s("arrays") else ["text"]
    if b.s("numeric_ranges", "optional_keys") or max_pages:
        args["max_pages"] = max_pages or r.randint(1, 5)
    b.draft.request = f"Open {url} and tell me what it recommends."
    if complexity == "branching_error_recovery":
        b.call("web.crawl", {"url": url + "/missing"})
    page = b.call("web.crawl", args)
    lines = page["text"].splitlines()
    b.draft.lead = f"I read the page at {url}."
    b.draft.integrations.append(f'The page "{page["title"]}" says: {lines[0]}.')
    if complexity == "multi_call":
        note = f"{page['title']}\n{lines[0]}\n"
        w = b.call(
            "file.write", {"path": f"notes/{world.slug(topic)}.md", "content": note, "mode": "overwrite"}
        )
        b.draft.integrations.append(f"I saved the note to {w['path']} ({b.num(w['bytes_written'])} bytes).")
    else:
        b.draft.integrations.append(f"It also notes: {lines[1]}.")


_PROGRAMS: tuple[tuple[str, Callable[[int], str], str], ...] = (
    ("sum of 1..{n}", lambda n: str(n * (n + 1) // 2), "print(sum(range(1, {n} + 1)))"),
    ("{n} squared", lambda n: str(n * n), "print({n} ** 2)"),
    ("the number of bits in {n}", lambda n: str(n.bit_length()), "print(({n}).bit_length())"),
    ("{n} in hexadecimal", lambda n: hex(n), "print(hex({n}))"),
)


def _code_run(b: Builder, complexity: str) -> None:
    r = b.r
    what, fn, src = r.choice(_PROGRAMS)
    n = r.randint(12, 5000)
    code = src.format(n=n) + f"\n# expect: {fn(n)}"
    args: dict[str, Any] = {"language": "python", "code": code}
    if b.s("numeric_ranges", "optional_keys"):
        args["timeout_s"] = r.choice((2, 5, 10.5))
    if b.s("optional_keys"):
        args["stdin"] = ""
    b.draft.request = f"Run a quick Python check: compute {what.format(n=n)}."
    if complexity == "branching_error_recovery":
        b.call("code.execute", {**args, "code": f"for i in range({n}):"})
    out = b.call("code.execute", args)
    b.draft.lead = "I ran the snippet in the sandbox."
    b.draft.integrations.append(f"The program printed {out['stdout']}.")
    if complexity == "multi_call":
        w = b.call(
            "file.write", {"path": "out/result.txt", "content": out["stdout"] + "\n", "mode": "overwrite"}
        )
        b.draft.integrations.append(f"The output is saved in {w['path']}.")


def _pick_file(r: random.Random) -> str:
    return f"{r.choice(world.DIRS)}/{r.choice(world.FILES)}"


def _file_ops(b: Builder, complexity: str) -> None:
    r = b.r
    path = _pick_file(r)
    args: dict[str, Any] = {"path": path}
    if b.s("numeric_ranges"):
        args.update(start_line=1, max_lines=r.choice((10, 50, 200)))
    if b.s("enums", "optional_keys"):
        args["encoding"] = "utf-8"
    b.draft.request = f"What does {path} configure?"
    if complexity == "branching_error_recovery":
        typo = path.rsplit("/", 1)[0] + "/" + path.rsplit("/", 1)[1].replace(".", "_old.", 1)
        b.call("read_file", {**args, "path": typo})
    res = b.call("read_file", args)
    lines = res["content"].splitlines()
    b.draft.lead = f"I read {path}."
    b.draft.integrations.append(f"{res['path']} sets {lines[0]}.")
    key, _, val = lines[1].partition(" = ")
    if complexity == "multi_call":
        dbl = b.call("math.eval", {"expression": f"{val} * 2"})["value"]
        b.draft.request += f" Also, what would {key} be if doubled?"
        b.draft.integrations.append(f"Doubling {key} ({val}) gives {b.num(dbl)}.")
    else:
        b.draft.integrations.append(f"It also sets {lines[1]}.")


def _report_write(b: Builder, complexity: str, email: str | None = None) -> None:
    r = b.r
    name = world.slug(r.choice(world.SUBJECTS))
    who = email or r.choice(("ana.silva@example.com", "team-ops@example.org", "raj.patel@example.com"))
    amount = round(r.uniform(1000, 990000), 2)
    body = f"Summary for {who}\nQuarterly spend: {b.num(amount, 2)}\n"
    path = f"reports/{name}.md" if complexity != "branching_error_recovery" else f"reports/existing-{name}.md"
    args: dict[str, Any] = {"path": path, "content": body}
    if b.s("nested_args"):
        args["options"] = {"newline": r.choice(("lf", "crlf")), "make_dirs": True}
    if b.s("enums", "optional_keys"):
        args["mode"] = (
            "overwrite" if complexity == "branching_error_recovery" else r.choice(("create", "overwrite"))
        )
    b.draft.request = f"Write a short spend summary ({b.num(amount, 2)}) for {who} to {path}."
    if complexity == "branching_error_recovery":
        b.call("file.write", {**args, "mode": "create"})
        args["mode"] = "overwrite"
    if complexity == "multi_call":
        total = b.call("math.eval", {"expression": f"{amount} * 4", "precision": 2})["value"]
        b.draft.request += " Include the annualised figure."
        args["content"] = body + f"Annualised: {b.num(total, 2)}\n"
    w = b.call("file.write", args)
    b.draft.lead = "The summary is written."
    b.draft.integrations.append(f"I wrote {b.num(w['bytes_written'])} bytes to {w['path']}.")
    if complexity == "multi_call":
        b.draft.integrations.append(f"The annualised spend is {b.num(total, 2)}.")


def _repo_nav(b: Builder, complexity: str, negative: bool = False, max_results: int | None = None) -> None:
    r = b.r
    key = r.choice(world.SETTINGS) if not negative else f"LEGACY_{r.choice(world.SETTINGS)}"
    args: dict[str, Any] = {"pattern": key}
    if b.s("arrays"):
        args["paths"] = sorted(r.sample(world.DIRS, 3))
    if b.s("numeric_ranges") or max_results:
        args["max_results"] = max_results or r.randint(3, 50)
    if b.s("optional_keys"):
        args["case_sensitive"] = True
    b.draft.request = f"Where is {key} defined in the repository?"
    if complexity == "branching_error_recovery":
        b.call("repo.search", {**args, "pattern": key.lower() + "_typo"})
    res = b.call("repo.search", args)
    if not res["matches"]:
        if negative:
            b.draft.lead = f"{key} is not defined anywhere in the repository."
            return
        res = b.call("repo.search", {"pattern": key})
    m = res["matches"][0]
    b.draft.lead = f"I searched the repository for {key}."
    b.draft.integrations.append(f"{key} is defined in {m['path']} as {m['text']}.")
    if complexity == "multi_call":
        f = b.call("read_file", {"path": m["path"]})
        other = next(ln for ln in f["content"].splitlines() if not ln.startswith(key))
        b.draft.integrations.append(f"The same file also sets {other}.")


def _api_lookup(b: Builder, complexity: str, negative: bool = False) -> None:
    r = b.r
    pkg = r.choice(world.PACKAGES) if not negative else f"{r.choice(world.PACKAGES)}-ng"
    url = f"https://api.example.com/v1/packages/{pkg}"
    args: dict[str, Any] = {"url": url}
    if b.s("nested_args"):
        args["params"] = {"fields": "version,released", "cache": False}
        args["headers"] = {"Accept": "application/json"}
    if b.s("numeric_ranges", "optional_keys"):
        args["timeout_s"] = r.choice((3, 5, 15))
    b.draft.request = f"What is the latest release of the {pkg} package?"
    if complexity == "branching_error_recovery":
        b.call("http.get", {**args, "timeout_s": 1})
    res = b.call("http.get", args)
    if res["status_code"] != 200:
        b.draft.lead = f"The registry has no package called {pkg}."
        return
    body = res["body"]
    b.draft.lead = "I queried the package registry."
    b.draft.integrations.append(
        f"{body['name']} is at version {body['version']}, released {body['released']}."
    )
    if complexity == "multi_call":
        per_day = b.call("math.eval", {"expression": f"{body['weekly_downloads']} / 7", "precision": 1})[
            "value"
        ]
        b.draft.integrations.append(
            f"It has {b.num(body['weekly_downloads'])} weekly downloads, about {b.num(per_day, 1)} a day."
        )


BUILDERS: dict[str, Callable[..., None]] = {
    "arithmetic": _arithmetic,
    "web_research": _web_research,
    "page_reading": _page_reading,
    "code_run": _code_run,
    "file_ops": _file_ops,
    "report_write": _report_write,
    "repo_nav": _repo_nav,
    "api_lookup": _api_lookup,
}

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


def _kind_schedule(seed: int) -> Iterator[str]:
    """Special kinds spread evenly: each block of 100 items holds MIX of them, shuffled by seed."""
    for block in itertools.count():
        slots = [k for k, n in MIX.items() for _ in range(n)]
        slots += ["normal"] * (100 - len(slots))
        rng_for("kinds", seed, block).shuffle(slots)
        yield from slots


def _stratum_schedule(seed: int) -> Iterator[tuple[str, str, str, str]]:
    all_strata = strata()
    for cycle in itertools.count():
        order = list(all_strata)
        rng_for("strata", seed, cycle).shuffle(order)
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


def make_item(index: int, seed: int, kind: str, stratum: tuple[str, str, str, str]) -> dict[str, Any]:
    return _build(index, seed, kind, stratum)[0]


def _build(
    index: int, seed: int, kind: str, stratum: tuple[str, str, str, str]
) -> tuple[dict[str, Any], Draft]:
    """The item, and the draft it was written from (its calls' fixture keys)."""
    locale = stratum[3]
    r = rng_for("item", seed, index)
    b = Builder(r, locale, stratum[1])
    shape = _shape(kind, stratum, r, b)
    teacher_text, spans = _teacher_text(b.draft)
    retry = shape.complexity == "branching_error_recovery"
    item = {
        "id": f"ctx-{seed}-{index:06d}",
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
            "call_sequence": gold_call_sequence(b.draft.calls, retry, shape.adversarial),
            "tool_results": [{"name": n, "result": res} for n, _, res in b.draft.calls],
            "integration_spans_bytes": to_byte_spans(teacher_text, spans),
            "negative_control": shape.negative,
            "adversarial": shape.adversarial,
            "long_context": shape.long_doc is not None,
            "provenance": {
                "generator": f"kimi_student.data.contextual@{__version__}",
                "seed": seed,
                "index": index,
            },
        },
    }
    return item, b.draft


def generate(n: int, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]], dict[tuple[str, str], dict]]:
    """(header, items, fixtures) for `n` items. Fixtures are keyed by (tool, normalised-args key)."""
    kinds, strata_iter = _kind_schedule(seed), _stratum_schedule(seed)
    items, fixtures = [], {}
    # Every item stays alive: no collection would find anything. Repeated calls are run once.
    with gc_paused(), world.calls_remembered():
        for i in range(n):
            kind = next(kinds)
            if kind in ("no_tool", "decline", "negative_control", "range_violation"):
                # These pick their own scenario and structure: they leave the stratum stream untouched.
                stratum = ("control", "none", "none", rng_for("locale", seed, i).choice(LOCALES))
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
