"""The import layers of the package (README "Code map"): a module may import its own package or a layer
below it, never a layer above, and no import, lazy or not, closes a cycle between modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "kimi_student"

# The ground floor: modules of the package root that everything may use (and `kimi_student` itself).
CORE = frozenset(
    {
        "",
        "errors",
        "fingerprint",
        "integrity",
        "jsonl",
        "numbers",
        "privacy",
        "sampling",
        "tokenizer",
        "manifest",
        "resources",
        "outputs",
    }
)
# Bottom to top: the rooms (subpackages, and "core") of each layer.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "core",
        "tools",
        "chat",
        "backends",  # one loader and one HTTP client: the students (models) load their teacher through it
        "models",
        "teachers export",
        "data",
        "eval train",
        "arbiter drafter probes",  # the Judge's eval reuses the harness's runner and gates; the Drafter, the Worker's runner
        "recipes dashboard",
        "cli",
    )
)


def room(module: str) -> str:
    """The room a module belongs to: `kimi_student.eval.score.item` -> `eval`, `kimi_student.jsonl` -> core."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return "core" if top in CORE else "cli" if top == "__main__" else top


def layer_of(module: str) -> int:
    r = room(module)
    for i, layer in enumerate(LAYERS):
        if r in layer:
            return i
    raise AssertionError(f"{module}: its package {r!r} is in no layer; add it to LAYERS")


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(source: str, me: str, is_pkg: bool = False) -> set[str]:
    """Every first-party module a file imports, at any depth of the file (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "kimi_student"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".")[: len(me.split(".")) - node.level + (1 if is_pkg else 0)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "kimi_student":
                continue
            for a in node.names:  # `from pkg import module` imports the module
                sub = f"{mod}.{a.name}"
                found.add(sub if module_file(sub) else mod)
    return found - {me}


def module_file(module: str) -> Path | None:
    base = PKG.parent / module.replace(".", "/")
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def graph() -> dict[str, set[str]]:
    return {
        module_name(p): imports(p.read_text(encoding="utf-8"), module_name(p), p.name == "__init__.py")
        for p in sorted(PKG.rglob("*.py"))
    }


def upward(g: dict[str, set[str]]) -> list[str]:
    """Imports of a higher layer, or of another package on the same layer."""
    return [
        f"{mod} (layer {layer_of(mod)}) imports {dep} (layer {layer_of(dep)})"
        for mod, deps in g.items()
        for dep in sorted(deps)
        if layer_of(dep) > layer_of(mod) or (layer_of(dep) == layer_of(mod) and room(dep) != room(mod))
    ]


def test_every_import_goes_down_or_stays_in_its_package():
    bad = upward(graph())
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for mod in sorted(g):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("from kimi_student.eval.harness import run_eval\n", True),
        ("def f():\n    from kimi_student.cli import app\n", True),  # lazy imports count too
        ("from kimi_student.teachers import base\n", False),
        ("from kimi_student.train.losses import kd_loss\n", True),
        ("from . import world\n", False),
        ("from ..eval import gates\n", True),  # relative imports are resolved
    ],
)
def test_the_rule_flags_an_upward_import(source, flagged):
    """The check itself can fail: a data module importing eval, the CLI or a sibling package is reported."""
    me = "kimi_student.data.probe"
    assert bool(upward({me: imports(source, me)})) is flagged


def test_every_first_party_import_names_a_module():
    """A stale path after a move (lazy imports are not run by every test) is caught here."""
    missing = [
        f"{mod} imports {dep}" for mod, deps in graph().items() for dep in deps if not module_file(dep)
    ]
    assert not missing, "\n".join(missing)
