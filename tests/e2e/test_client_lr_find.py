"""The Python client's new verbs against the real API and worker: arrays up, NumPy in specs, CSV, and
`lr_find` in one call with a local plot and the Keras optimizer at the recommended LR."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrrt.client.api import Client, LrrtError
from lrrt.client.result import RangeTestResult

from .conftest import REPO
from .test_cli_full import run_with_keras

pytestmark = pytest.mark.e2e


class KerasLikeModel:
    """Duck-types a Keras model: the client only ever calls `to_json()` (no Keras in this process)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def to_json(self) -> str:
        return json.dumps(self.config)


def digits_like(n: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """64 features whose class is readable from them, so the loss falls and the rules have a curve."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, n)
    x = rng.normal(scale=0.3, size=(n, 64)).astype("float32")
    x[np.arange(n), y * 6] += 2.0
    return x, y


def test_upload_arrays_show_and_delete(client: Client) -> None:
    x, y = digits_like(100)
    meta = client.upload_arrays(x, y, x_val=x[:20], y_val=y[:20])
    assert meta["shapes"] == {"x": [100, 64], "y": [100], "x_val": [20, 64], "y_val": [20]}
    assert client.dataset(meta["uri"])["id"] == meta["id"]
    client.delete_dataset(meta["id"])
    with pytest.raises(LrrtError) as gone:
        client.dataset(meta["id"])
    assert gone.value.status == 404


def test_numpy_values_in_a_spec_are_sent_as_json(client: Client, digits_mlp: dict[str, Any]) -> None:
    job = client.submit(digits_mlp, "builtin:digits", optimizers=["adam"],
                        sweep={"num_steps": np.int64(12), "start_lr": np.float32(1e-4), "end_lr": np.array(1.0),
                               "batch_size": np.int32(32)})
    assert job["spec"]["sweep"]["num_steps"] == 12 and job["spec"]["sweep"]["batch_size"] == 32
    assert client.wait(job["id"], timeout=240)["status"] == "succeeded"
    rows = list(csv.DictReader(io.StringIO(client.result_csv(job["id"]))))
    assert len(rows) == len(client.result(job["id"])["arms"][0]["lrs"]) > 0


def test_lr_find_in_one_call(client: Client, digits_mlp: dict[str, Any], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    x, y = digits_like()
    before = {d["id"] for d in client.datasets()}
    found = client.lr_find(KerasLikeModel(digits_mlp), x, y, optimizers=["sgd", "adam"], num_steps=np.int64(60),
                           batch_size=32, start_lr=1e-4, end_lr=10.0, timeout=240)
    assert isinstance(found, RangeTestResult) and not found.partial and found.job_id
    assert set(found.suggestions) == {"sgd", "adam"}
    assert {"steepest", "valley", "minimum", "slide"} <= set(found.suggestions["adam"])
    assert found.learning_rate is not None and 1e-4 <= found.learning_rate <= 10.0
    assert found.recommendation["optimizer"] in ("sgd", "adam")
    assert "steps" in capsys.readouterr().err  # progress was shown (plain lines: stderr is not a terminal here)
    assert {d["id"] for d in client.datasets()} == before  # the upload was removed afterwards

    figure = found.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes().startswith(b"\x89PNG")
    assert [ax.get_xscale() for ax in figure.axes] == ["log", "log"]
    # Drawn on a bare Figure, no GUI backend chosen: checked in a fresh interpreter, since other tests of
    # this session may have imported pyplot already.
    probe = ("import json, sys\nfrom lrrt.client.result import RangeTestResult\n"
             f"RangeTestResult(json.loads({json.dumps(found.data)!r})).plot({str(tmp_path / 'again.png')!r})\n"
             "assert 'matplotlib.pyplot' not in sys.modules, 'plot() imported pyplot'\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

    lr = found.learning_rate
    data = json.dumps(found.data)
    run_with_keras(
        "import json, keras\n"
        "from lrrt.client.result import RangeTestResult\n"
        f"found = RangeTestResult(json.loads({data!r}))\n"
        "constant = found.keras_optimizer()\n"
        f"assert abs(float(constant.learning_rate) - {lr!r}) < 1e-6 * {lr!r}  # a float32 variable\n"
        f"assert type(constant).__name__ == {found.recommendation['optimizer']!r}.replace('sgd', 'SGD').replace('adam', 'Adam')\n"
        "cycle = found.keras_optimizer(one_cycle=True, total_steps=1000)\n"
        "schedule = cycle._learning_rate  # the property reads the schedule's value at the current step\n"
        "assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)\n"
        "plan = found.recommendation['one_cycle']\n"
        "assert abs(float(cycle.learning_rate) - plan['base_lr']) < 1e-6 * plan['base_lr']  # step 0\n"
        "assert abs(float(schedule(300)) - plan['max_lr']) < 1e-6 * plan['max_lr']\n"
        "assert float(schedule(0)) < float(schedule(300))\n"
        "exec(found.keras_code())\n"
    )


def test_lr_find_failure_raises_the_jobs_error(client: Client, digits_mlp: dict[str, Any]) -> None:
    x = np.zeros((64, 5), "float32")  # the model wants 64 features: only the worker can tell
    with pytest.raises(LrrtError) as failed:
        client.lr_find(digits_mlp, x, np.zeros(64, "int64"), num_steps=10, progress=False, timeout=240)
    assert "64" in str(failed.value) and "5" in str(failed.value)


def test_the_example_script_prints_the_lr_and_saves_the_plot(api_server: Any, client: Client, tmp_path: Path) -> None:
    """examples/lr_find_numpy.py as a user runs it: under ten lines, a Keras model built in memory."""
    script = REPO / "examples" / "lr_find_numpy.py"
    assert len(script.read_text().splitlines()) < 10
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}
    env.update(LRRT_URL=api_server.url, LRRT_API_KEY="key-alice", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, check=False,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("recommended:"))
    # The model is built, so the sweep starts from its current weights (uploaded by lr_find) and says so.
    assert re.search(r"(sgd|adam) at learning rate [0-9.e+-]+, starting from weights weights:[0-9a-f]{32}$", line), line
    assert (tmp_path / "lr_find.png").read_bytes().startswith(b"\x89PNG")
