"""A recipe's config file read and its sections checked, before anything heavy is imported (a bad config is
refused in a fraction of a second, not after torch and coremltools load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kimi_student.errors import InputError


def load_config(
    path: Path, sections: tuple[str, ...] = ("data", "decode", "gates", "sizes")
) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise InputError(path, None, None, f"cannot read config: {e}") from None
    if not isinstance(cfg, dict):
        raise InputError(path, None, None, f"expected a mapping of sections, got {type(cfg).__name__}")
    for key in sections:
        if not isinstance(cfg.get(key), dict):
            raise InputError(path, None, key, "missing section")
    return cfg
