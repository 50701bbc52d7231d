"""The `lrrt` command line without a server: help, argument errors, refusals. Every error is a
readable message and a non-zero exit code, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup

from service.cli import _optimizer, app

REPO = Path(__file__).resolve().parents[2]


def lrrt(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env={**base, "COLUMNS": "160", **env},
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_help_lists_every_command() -> None:
    run = lrrt("--help")
    assert run.returncode == 0
    for command in ("standalone", "api", "worker", "submit", "status", "result", "cancel", "jobs"):
        assert command in run.stdout


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and subcommand of the CLI with its path (`("datasets", "upload")`), groups included."""
    yield path, command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))


COMMANDS = dict(commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda path: " ".join(path) or "lrrt")
def test_help_prints_every_flag_whole_at_80_columns(path: tuple[str, ...]) -> None:
    run = lrrt(*path, "--help", COLUMNS="80")
    assert run.returncode == 0, run.stderr
    flags = [opt for param in COMMANDS[path].params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("-")]
    cut = [flag for flag in flags if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", run.stdout)]
    assert not cut, f"lrrt {' '.join(path)} --help at 80 columns does not show {cut} whole:\n{run.stdout}"
    assert max(map(len, run.stdout.splitlines())) <= 80, run.stdout


@pytest.mark.parametrize(
    ("text", "arm"),
    [
        ("adam", {"name": "adam"}),
        ("sgd:momentum=0.9,nesterov=true", {"name": "sgd", "params": {"momentum": 0.9, "nesterov": True}}),
        ("sgd:momentum=0.9@SGD momentum", {"name": "sgd", "params": {"momentum": 0.9}, "label": "SGD momentum"}),
    ],
)
def test_optimizer_option(text: str, arm: dict) -> None:
    assert _optimizer(text) == arm


def test_missing_model_file(tmp_path: Path) -> None:
    run = lrrt("submit", str(tmp_path / "nope.json"), "--dataset", "builtin:digits")
    assert run.returncode == 1
    assert "cannot read" in run.stderr and "Traceback" not in run.stderr


def test_model_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "model.json"
    bad.write_text("model = Sequential()")
    run = lrrt("submit", str(bad), "--dataset", "builtin:digits")
    assert run.returncode == 1
    assert "is not JSON" in run.stderr and "to_json" in run.stderr


def test_unreachable_server_says_how_to_start_one() -> None:
    run = lrrt("jobs", LRRT_URL="http://127.0.0.1:9")  # discard port: nothing listens
    assert run.returncode == 1
    assert "Cannot reach the lrrt server" in run.stderr and "lrrt standalone" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("command", ["api", "standalone"])
def test_public_bind_without_api_keys_is_refused(command: str) -> None:
    run = lrrt(command, "--host", "0.0.0.0", "--port", "8999")
    assert run.returncode == 1
    assert "LRRT_API_KEYS" in run.stderr and "Traceback" not in run.stderr


def test_a_results_notes_are_printed_after_the_recommendation(capsys: pytest.CaptureFixture[str]) -> None:
    """A compiled model's notes (which optimizer and loss ran) are said in the table view, not only in --json."""
    from service.cli import _print_result

    note = {"code": "compiled_optimizer_used", "message": "arm 'adamw' is the model's compiled optimizer (adamw)"}
    _print_result({"arms": [], "recommendation": None, "notes": [note]}, "succeeded")
    assert "Note: arm 'adamw' is the model's compiled optimizer (adamw)" in capsys.readouterr().out
