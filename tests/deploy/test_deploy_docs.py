"""docs/operations.md and .env.example stay in step with worker/core/settings.py, the one list of settings."""

from __future__ import annotations

import re
from pathlib import Path

from worker.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANUAL = (ROOT / "docs" / "operations.md").read_text()
CLIENT_SIDE = {"LRRT_URL", "LRRT_API_KEY"}


def setting_vars() -> set[str]:
    return {f"LRRT_{name.upper()}" for name in Settings.model_fields}


def test_configuration_table_lists_every_setting_and_nothing_else() -> None:
    rows = set(re.findall(r"^\| `(LRRT_[A-Z0-9_]+)` \|", MANUAL, flags=re.M))
    assert setting_vars() - rows == set(), "docs/operations.md, Configure: add a row for each new setting"
    assert rows - setting_vars() == set(), "docs/operations.md, Configure: a row names a setting that does not exist"


def test_table_defaults_match_the_code() -> None:
    for name, field in Settings.model_fields.items():
        row = re.search(rf"^\| `LRRT_{name.upper()}` \| ([^|]+) \|", MANUAL, flags=re.M)
        assert row, name
        cell = row[1].strip()
        default = field.default
        if default in ("", None):
            assert "empty" in cell, f"LRRT_{name.upper()}: documented default {cell!r}, code has {default!r}"
        else:
            assert cell.split()[0].strip("`") == str(default), f"LRRT_{name.upper()}: {cell!r} vs {default!r}"


def test_every_lrrt_variable_named_anywhere_exists() -> None:
    named = set(re.findall(r"\b(LRRT_[A-Z][A-Z0-9_]*)\b(?![*…])", MANUAL + (ROOT / ".env.example").read_text()))
    assert named - setting_vars() - CLIENT_SIDE == set()


def test_env_example_mentions_every_setting() -> None:
    mentioned = set(re.findall(r"^#?(LRRT_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    assert setting_vars() - mentioned == set()
