"""Two tiers for property tests: the default suite runs each property derandomized (the same examples on
every run) with a modest count; a `slow` twin runs it with many more, random, examples: 2,000 in
`make test-slow`, PROPERTY_EXAMPLES (100) in `make test`, which runs every tier inside its time budget."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

FAST = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
MANY = settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def tiers(check: Callable[..., Any], **strategies: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(default test, slow test) of `check` over `strategies` (keyword: pytest fixtures can go beside)."""
    return FAST(given(**strategies)(check)), pytest.mark.slow(MANY(given(**strategies)(check)))
