"""`lrrt submit` and `lrrt run` options are generated from the JobSpec schema: every sweep and dataset
field is a flag, typed and helped from the schema, and only the flags typed reach the body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from lrrt.spec import DatasetRef, Sweep
from service.spec_options import SpecArgs, spec_option_list, spec_options
from tests.service.test_cli import lrrt


def test_submit_and_run_help_list_every_sweep_and_dataset_field() -> None:
    fields = [f"sweep.{name}" for name in Sweep.model_fields] + [
        f"dataset.{name}" for name in DatasetRef.model_fields if name != "uri"]
    for command in ("submit", "run"):
        run = lrrt(command, "--help", COLUMNS="400")
        assert run.returncode == 0, run.stderr
        missing = [field for field in fields if field not in run.stdout]
        assert missing == [], f"lrrt {command} --help lacks {missing}"
        assert "[@label]" in run.stdout and "--json" in run.stdout
    assert "--labels" in lrrt("submit", "--help", COLUMNS="400").stdout


def _probe() -> tuple[typer.Typer, dict[str, Any]]:
    seen: dict[str, Any] = {}
    app = typer.Typer()

    @app.command()
    @spec_options
    def probe(name: str = typer.Option("x"), *, spec: SpecArgs) -> None:
        seen.update(name=name, spec=spec)

    return app, seen


@pytest.mark.parametrize(
    ("args", "sweep", "dataset"),
    [
        ([], {}, {}),  # nothing typed: the server's defaults apply
        (["--steps", "30", "--mode", "linear", "--divergence-threshold", "none", "--no-jit-compile"],
         {"num_steps": 30, "mode": "linear", "divergence_threshold": None, "jit_compile": False}, {}),
        (["--smoothing", "0.9", "--evaluate-on", "validation", "--repeats", "3", "--seed", "7",
          "--validation-split", "0.2", "--max-samples", "500", "--normalize"],
         {"smoothing": 0.9, "evaluate_on": "validation", "repeats": 3, "seed": 7},
         {"validation_split": 0.2, "max_samples": 500, "normalize": True}),
    ],
)
def test_only_typed_options_reach_the_body(args: list[str], sweep: dict, dataset: dict) -> None:
    app, seen = _probe()
    run = CliRunner().invoke(app, ["m.json", "--dataset", "builtin:digits", "--name", "y", "-o", "sgd@S", *args])
    assert run.exit_code == 0, run.output
    assert seen == {"name": "y", "spec": SpecArgs(model=Path("m.json"), dataset={"uri": "builtin:digits", **dataset},
                                                  optimizers=["sgd@S"], loss=None, sweep=sweep, weights=None)}


def test_bad_values_are_usage_errors() -> None:
    app, _ = _probe()
    for args in (["--mode", "cubic"], ["--divergence-threshold", "high"], ["--steps", "many"]):
        run = CliRunner().invoke(app, ["m.json", "--dataset", "builtin:digits", *args])
        assert run.exit_code == 2, (args, run.output)


def test_one_option_per_field() -> None:
    names = [(o.section, o.field) for o in spec_option_list()]
    assert len(names) == len(set(names)) == len(Sweep.model_fields) + len(DatasetRef.model_fields) - 1
