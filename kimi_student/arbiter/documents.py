"""The CAWS documents a change is checked against, read into frozen dataclasses.

The working spec and the tier policy are the law: one that does not fit its schema is bad input (an
`InputError` naming file and field). Waivers and evidence are part of what is judged: one that does not fit
its schema is kept, with its `problems`, and the oracle rules it invalid (a finding, not a crash).
Schemas are package data (`arbiter/schemas/*.schema.json`, JSON Schema 2020-12).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from kimi_student.errors import InputError
from kimi_student.resources import config_path, package_path

CLAUSES = ("BUDGET_ADHERENCE", "SCOPE_BOUNDARY", "GATE_INTEGRITY", "PROVENANCE", "WAIVER_VALIDITY")
SCHEMAS = ("working_spec", "tier_policy", "waiver", "evidence", "verdict")


@functools.cache
def schema(name: str) -> dict[str, Any]:
    if name not in SCHEMAS:
        raise KeyError(f"unknown CAWS schema {name!r}; known: {', '.join(SCHEMAS)}")
    return json.loads(package_path("arbiter", "schemas", f"{name}.schema.json").read_text(encoding="utf-8"))


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema

    s = schema(name)
    return jsonschema.validators.validator_for(s)(s)


def schema_problems(name: str, obj: Any) -> tuple[str, ...]:
    """Every way `obj` breaks schema `name`, each as `field.path: message`, in a stable order."""
    errors = sorted(
        _validator(name).iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    return tuple(f"{'.'.join(map(str, e.absolute_path)) or '(document)'}: {e.message}" for e in errors)


def parse_time(text: str) -> datetime:
    """ISO-8601 with a time zone (`Z` or an offset). A naive time is refused: expiry must not depend on the
    checker's zone."""
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return t


class _JsonShapedLoader(yaml.SafeLoader):
    """YAML read as the JSON the schemas describe: a timestamp stays the text written (the schemas want a
    date-time string; YAML would make an unquoted one a datetime and the waiver would fail its schema)."""


_JsonShapedLoader.yaml_implicit_resolvers = {
    first: [r for r in rs if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _json_shaped(obj: Any) -> Any:
    """Integer mapping keys as the strings JSON would hold (`1:` of a tier policy is tier "1")."""
    if isinstance(obj, dict):
        return {
            (str(k) if isinstance(k, int) and not isinstance(k, bool) else k): _json_shaped(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_json_shaped(v) for v in obj]
    return obj


def read_document(path: str | Path) -> Any:
    """A YAML or JSON file (JSON is YAML), as the JSON the schemas describe (`_JsonShapedLoader`, `_json_shaped`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(p, None, None, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(p, None, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return _json_shaped(yaml.load(text, Loader=_JsonShapedLoader))  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(
            p, mark.line + 1 if mark else None, None, f"not YAML/JSON: {getattr(e, 'problem', e)}"
        ) from None


def _law(name: str, obj: Any, source: str | Path | None) -> None:
    problems = schema_problems(name, obj)
    if problems:
        field, _, message = problems[0].partition(": ")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(source, None, field, f"{message}{more}")


@dataclass(frozen=True)
class Criterion:
    id: str
    text: str


@dataclass(frozen=True)
class Spec:
    id: str
    title: str
    risk_tier: int
    scope_in: tuple[str, ...]
    scope_out: tuple[str, ...] = ()
    scope_support: tuple[str, ...] = ()
    acceptance: tuple[Criterion, ...] = ()


def spec_from(obj: Any, source: str | Path | None = None) -> Spec:
    _law("working_spec", obj, source)
    scope = obj["scope"]
    criteria = tuple(
        Criterion(a["id"], " ".join(f"{k} {a[k]}" for k in ("given", "when", "then") if a.get(k)))
        for a in obj.get("acceptance", [])
    )
    return Spec(
        obj["id"],
        obj["title"],
        obj["risk_tier"],
        tuple(scope["in"]),
        tuple(scope.get("out", [])),
        tuple(scope.get("support", [])),
        criteria,
    )


@dataclass(frozen=True)
class Tier:
    max_files: int
    max_loc: int
    coverage_min: float | None = None
    mutation_min: float | None = None


@dataclass(frozen=True)
class Policy:
    tiers: dict[int, Tier]
    gate_modes: dict[str, str]  # gate -> block | warn | skip; a gate not named blocks
    min_approvers_for_budget_raise: int = 1
    policy_and_code_same_change: bool = False
    governed_paths: tuple[str, ...] = (".caws",)
    required_evidence: tuple[str, ...] = ("tests", "lint", "coverage")
    min_rationale_words: int = 5

    def mode(self, gate: str) -> str:
        return self.gate_modes.get(gate, "block")


def policy_from(obj: Any, source: str | Path | None = None) -> Policy:
    _law("tier_policy", obj, source)
    tiers = {
        int(k): Tier(v["max_files"], v["max_loc"], v.get("coverage_min"), v.get("mutation_min"))
        for k, v in obj["risk_tiers"].items()
    }
    modes = {
        g: ("skip" if v.get("enabled") is False else v.get("mode", "block"))
        for g, v in obj.get("gates", {}).items()
    }
    return Policy(
        tiers,
        modes,
        obj.get("waivers", {}).get("min_approvers_for_budget_raise", 1),
        obj.get("edit_rules", {}).get("policy_and_code_same_pr", False),
        tuple(obj.get("governed_paths", [".caws"])),
        tuple(obj.get("required_evidence", ["tests", "lint", "coverage"])),
        obj.get("min_rationale_words", 5),
    )


def default_policy() -> Policy:
    path = config_path("caws_policy.yaml")
    return policy_from(read_document(path), path)


@dataclass(frozen=True)
class Waiver:
    id: str
    gates: tuple[str, ...]
    status: str
    expires_at: str
    approvers: tuple[str, ...]
    applies_to: str | None = None
    delta_files: int = 0
    delta_loc: int = 0
    has_delta: bool = False
    problems: tuple[str, ...] = ()  # schema violations: such a waiver lifts nothing


def _typed(o: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """o[key] when it has the type, else `default`: a waiver or evidence file is judged, not trusted, so a
    mistyped field reads as missing (its schema problem is reported apart)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    v = o.get(key, default)
    if isinstance(v, bool) and bool not in kinds:  # to Python True is an int; to a schema it is no count
        return default
    return v if isinstance(v, kinds) else default


def waiver_from(obj: Any) -> Waiver:
    problems = schema_problems("waiver", obj)
    o = obj if isinstance(obj, dict) else {}
    delta = _typed(o, "delta", dict, {})
    return Waiver(
        str(o.get("id", "?")),
        tuple(str(g) for g in _typed(o, "gates", list, [])),
        str(o.get("status", "")),
        str(o.get("expires_at", "")),
        tuple(
            str(a["handle"])
            for a in _typed(o, "approvers", list, [])
            if isinstance(a, dict) and a.get("handle")
        ),
        _typed(o, "applies_to", str),
        _typed(delta, "max_files", int, 0),
        _typed(delta, "max_loc", int, 0),
        bool(delta),
        problems,
    )


@dataclass(frozen=True)
class EvidenceItem:
    kind: str
    status: str
    exit_code: int | None = None
    value: float | None = None
    criterion_id: str | None = None
    command: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass" and self.exit_code in (None, 0)


@dataclass(frozen=True)
class Evidence:
    spec_id: str | None
    commit_sha: str | None
    items: tuple[EvidenceItem, ...]
    problems: tuple[str, ...] = ()

    def of(self, kind: str) -> tuple[EvidenceItem, ...]:
        return tuple(i for i in self.items if i.kind == kind)


def evidence_from(obj: Any) -> Evidence:
    problems = schema_problems("evidence", obj)
    o = obj if isinstance(obj, dict) else {}
    items = []
    for it in _typed(o, "items", list, []):
        if isinstance(it, dict) and isinstance(it.get("kind"), str):
            value = _typed(it, "value", (int, float))
            items.append(
                EvidenceItem(
                    it["kind"],
                    str(it.get("status", "")),
                    _typed(it, "exit_code", int),
                    None if value is None else float(value),
                    _typed(it, "criterion_id", str),
                    _typed(it, "command", str),
                )
            )
    return Evidence(_typed(o, "spec_id", str), _typed(o, "commit_sha", str), tuple(items), problems)


def load_spec(path: str | Path) -> Spec:
    return spec_from(read_document(path), path)


def load_policy(path: str | Path) -> Policy:
    return policy_from(read_document(path), path)


def load_waivers(path: str | Path) -> tuple[Waiver, ...]:
    """One waiver, or a list of them, per file."""
    doc = read_document(path)
    return tuple(waiver_from(w) for w in (doc if isinstance(doc, list) else [doc]))


def load_evidence(path: str | Path) -> Evidence:
    return evidence_from(read_document(path))
