"""The docs, .env.example and the compose files stay in step with lrrt/settings.py, the one list of
settings: every `LRRT_*` variable they name is one the code reads, and every default they state is the code's."""

from __future__ import annotations

import re
from pathlib import Path

from lrrt.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANUAL = (ROOT / "docs" / "operations.md").read_text()
#: Where users and operators read about variables.
DOCUMENTS = [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md")), ROOT / ".env.example",
             *sorted(ROOT.glob("docker-compose*.yml")), *sorted(ROOT.glob("deploy/**/*.yml")),
             ROOT / "Dockerfile", ROOT / "Dockerfile.gpu"]
#: `LRRT_*` names in the text, except patterns such as `LRRT_MAX_*`.
NAMED = re.compile(r"\b(LRRT_[A-Z][A-Z0-9_]*)\b(?![*…])")


def setting_vars() -> set[str]:
    return {f"LRRT_{name.upper()}" for name in Settings.model_fields}


def test_configuration_table_lists_every_setting_and_nothing_else() -> None:
    rows = set(re.findall(r"^\| `(LRRT_[A-Z0-9_]+)` \|", MANUAL, flags=re.M))
    assert setting_vars() - rows == set(), "docs/operations.md, Configure: add a row for each new setting"
    assert rows - setting_vars() == set(), "docs/operations.md, Configure: a row names a setting that does not exist"


def read_from_environ(*files: Path) -> set[str]:
    """`LRRT_*` names the given code reads from the environment itself, not through Settings."""
    source = "".join(path.read_text() for path in files)
    return set(re.findall(r"""environ(?:\.get\(|\[)\s*["'](LRRT_[A-Z0-9_]+)["']""", source))


#: Client side (the CLI and the Python client), and the test suite's and benchmarks' own knobs.
NOT_SETTINGS = read_from_environ(ROOT / "lrrt" / "client" / "api.py", *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py"))


def test_every_lrrt_variable_named_anywhere_exists() -> None:
    """A documented variable the server does not read would be silently ignored by whoever sets it."""
    for document in DOCUMENTS:
        named = set(NAMED.findall(document.read_text()))
        unread = named - setting_vars() - NOT_SETTINGS
        assert not unread, f"{document.relative_to(ROOT)} names {sorted(unread)}: no Settings field, no code reads it"


def test_table_defaults_match_the_code() -> None:
    """Any table row `| `LRRT_X` | default | ...` in the README or docs/ (the Configure tables, api.md's limits)."""
    defaults = {f"LRRT_{name.upper()}": field.default for name, field in Settings.model_fields.items()}
    for document in [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))]:
        for var, cell in re.findall(r"\| `(LRRT_[A-Z0-9_]+)` \| ([^|]+) \|", document.read_text()):
            if var not in defaults:
                continue
            where, cell, default = f"{document.relative_to(ROOT)}, {var}", cell.strip(), defaults[var]
            if default in ("", None):
                assert "empty" in cell, f"{where}: documented default {cell!r}, code has {default!r}"
            else:
                assert cell.split()[0].strip("`") == str(default), f"{where}: documented {cell!r}, code {default!r}"


def test_env_example_mentions_every_setting() -> None:
    mentioned = set(re.findall(r"^#?(LRRT_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    assert setting_vars() - mentioned == set()
