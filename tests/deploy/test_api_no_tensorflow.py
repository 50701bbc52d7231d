"""The API process never imports TensorFlow or Keras (docs/design.md): it starts in about a second, its
image carries neither, and the worker's parent process stays fork-safe for CUDA.

Checked in a fresh interpreter, because this test session may already have imported Keras.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Modules the API and the worker's parent import; every module of the `service` package is added.
MODULES = [
    "worker.spec",
    "worker.settings",
    "worker.keys",
    "worker.celery_app",
    "worker.engine",
    "worker.engine.allowlist",
    "worker.engine.errors",
    # The `lrrt worker` parent process imports the task module; Keras loads only in pool children.
    "worker.tasks",
]

PROBE = r"""
import importlib, json, pkgutil, sys
import service
names = sorted({m.name for m in pkgutil.walk_packages(service.__path__, "service.")} | {"service"})
names += sys.argv[1:]
for name in names:
    importlib.import_module(name)
if "service.app" in sys.modules:
    from worker.settings import Settings
    sys.modules["service.app"].create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras", "jax", "torch", "tf_keras"})
print(json.dumps({"imported": names, "heavy": heavy}))
"""


def test_api_and_worker_parent_import_no_tensorflow_or_keras() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *MODULES], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"importing the API modules failed:\n{done.stderr[-4000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "service.app" in report["imported"] and "service.cli" in report["imported"]
    assert report["heavy"] == [], f"importing {report['imported']} loaded {report['heavy'][:10]}"
