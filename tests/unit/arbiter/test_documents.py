"""CAWS documents are YAML read as the JSON their schemas describe: a tier policy's unquoted tier numbers and
a waiver's unquoted timestamps mean what their quoted forms mean (YAML alone would make them an int key and a
datetime, which the schemas refuse: a policy then crashed the check, a waiver lifted nothing)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from kimi_student.arbiter.documents import load_policy, load_waivers
from kimi_student.resources import config_path
from tests.unit.arbiter.test_oracle import waiver


def test_unquoted_tier_numbers_are_the_tiers(tmp_path: Path) -> None:
    text = config_path("caws_policy.yaml").read_text(encoding="utf-8")
    bare = re.sub(r'^  "(\d)":', r"  \1:", text, flags=re.M)
    assert bare != text and "\n  1: {" in bare
    (tmp_path / "p.yaml").write_text(bare, encoding="utf-8")
    assert load_policy(tmp_path / "p.yaml") == load_policy(config_path("caws_policy.yaml"))


def test_unquoted_timestamps_stay_the_text_written(tmp_path: Path) -> None:
    quoted = yaml.safe_dump(waiver(), sort_keys=False)
    bare = quoted.replace("'2026-12-31T00:00:00Z'", "2026-12-31T00:00:00Z")
    assert bare != quoted
    for name, text in (("q.yaml", quoted), ("b.yaml", bare)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    [w] = load_waivers(tmp_path / "b.yaml")
    assert w.expires_at == "2026-12-31T00:00:00Z" and w.problems == ()
    assert (w,) == load_waivers(tmp_path / "q.yaml")
