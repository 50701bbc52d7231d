"""The zoo cases of `test_zoo_sweeps.py` on JAX, through `auto` wherever `auto` picks JAX, with a JAX
worker beside the TensorFlow one: `test_zoo_sweeps.py` runs them on TensorFlow, so each case runs on
both backends and on the route `auto` takes.

Issue 20: MobileNetV3, EfficientNet, ConvNeXt and models with augmentation layers passed on TensorFlow
while they failed on the JAX workers `auto` sends them to (TensorFlow blocked there; docs/design.md).
One arm, one seed and few steps: on JAX each case compiles its train step once.
"""

from __future__ import annotations

import numpy as np
import pytest

from lrrt.client.api import Client
from lrrt.routing import rule_backend
from tests.e2e.test_zoo_sweeps import CASES
from tests.zoo import models

from .conftest import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SWEEP = {"start_lr": 1e-4, "end_lr": 1e-2, "num_steps": 3, "batch_size": 4, "repeats": 1}


@pytest.mark.parametrize("case", sorted(CASES))
def test_model_sweeps_on_jax_where_auto_sends_it(client: Client, jax_worker: Worker, case: str) -> None:
    make_model, make_data, loss = CASES[case]
    model = models.as_json(make_model())
    pick = rule_backend(model, "cpu", SWEEP["batch_size"]).backend  # what `auto` picks with both backends live
    backend = "auto" if pick == "jax" else "jax"
    x, y = make_data(np.random.default_rng(0))
    dataset = client.upload_arrays(x, y)
    job = client.submit(model, {"uri": dataset["uri"], "validation_split": 0.0}, optimizers=["adam"], loss=loss,
                        sweep=SWEEP, backend=backend)
    done = client.wait(job["id"], timeout=900)
    assert done["status"] == "succeeded", (done.get("error"), jax_worker.tail())
    result = client.result(job["id"])
    assert result["engine"]["backend"] == "jax", result["engine"]
    arm = result["arms"][0]
    assert len(arm["losses"]) == SWEEP["num_steps"] and all(np.isfinite(arm["losses"])), arm["losses"]
