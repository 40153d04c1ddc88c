"""Files shipped inside the package: the configs (gates, privacy allowlist, student and toy recipes) and
the ToolBroker's base fixtures.

They are package data (pyproject `[tool.setuptools.package-data]`) found through importlib.resources, so
a wheel installed anywhere reads the same bytes as a checkout, whatever the working directory. Callers
get a real `Path`: fixture fingerprints hash file names relative to their folder, and pip installs
packages as plain folders.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from kimi_student.errors import KimiStudentError


def package_path(*parts: str) -> Path:
    """`kimi_student/<parts...>` as a filesystem path (an installed package is a plain folder)."""
    found = files("kimi_student").joinpath(*parts)
    if not isinstance(found, Path):  # a zip import has no folder to hash or glob
        raise KimiStudentError(f"kimi_student is not installed as a folder: cannot read {'/'.join(parts)}")
    return found.resolve()


CONFIGS = package_path("configs")


def config_path(name: str) -> Path:
    """A packaged config, e.g. `config_path("gates.yaml")`."""
    return CONFIGS / name


def shown_path(path: str | Path) -> str:
    """How a path is recorded in reports: relative to the package for packaged files (`configs/toy_e2e.yaml`),
    so a report does not depend on where the package is installed; as given otherwise."""
    p = Path(path)
    try:
        return p.resolve().relative_to(package_path()).as_posix()
    except ValueError:
        return str(path)
