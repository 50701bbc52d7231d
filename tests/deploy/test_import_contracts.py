"""The layering is a checked contract: import-linter's contracts in pyproject.toml, plus the one fact a
static import graph cannot show.

- `lint-imports` passes on the tree, and fails on a copy of it in which the service imports the engine
  (so the contract is proven to bite, not only to pass).
- The `lrrt worker` parent process imports the task module, which may import the engine (tasks ->
  engine is an allowed direction) but must not load Keras before the pool forks: CUDA and fork do
  not mix. That is a run-time property, checked in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_import_contracts_fail_when_the_service_imports_the_engine(tmp_path: Path) -> None:
    for name in ("service", "worker"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "service" / "sneaky.py").write_text("from worker.engine.sweep import run_sweep\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "the HTTP service never imports" in done.stdout and "BROKEN" in done.stdout
    assert "service.sneaky -> worker.engine.sweep" in done.stdout


PROBE = r"""
import importlib, json, sys
for name in ("service.app", "service.cli", "lrrt.client.local", "lrrt.client.api", "worker.tasks"):
    importlib.import_module(name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras", "jax", "torch", "tf_keras"})
print(json.dumps(heavy))
"""


def test_worker_parent_process_imports_no_keras() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"importing the worker's parent modules failed:\n{done.stderr[-4000:]}"
    heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert heavy == [], f"`lrrt worker`'s parent process loaded {heavy[:10]} before forking"
