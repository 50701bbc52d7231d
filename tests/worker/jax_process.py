"""Run engine code on the JAX backend from a TensorFlow test process: a fresh Python with
KERAS_BACKEND=jax and TensorFlow blocked the way `lrrt worker --backend jax` blocks it
(`worker.bootstrap.block_tensorflow`), so a test sees what a JAX worker's pool child sees.

Keras fixes its backend at import, and the test process has imported Keras on TensorFlow already,
hence a subprocess. The snippet prints one JSON line prefixed with RESULT; that object comes back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PRELUDE = """
import json, sys
from worker.bootstrap import block_tensorflow
block_tensorflow()
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
def report(value):
    print("RESULT" + json.dumps(value), flush=True)
"""


def run_on_jax(snippet: str, timeout: float = 600) -> Any:
    """Run `snippet` (which calls `report(value)` once) in a JAX worker-like process; return `value`."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(snippet)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert done.returncode == 0 and lines, f"JAX process failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(lines[-1].removeprefix("RESULT"))
