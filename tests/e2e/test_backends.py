"""The same job on TensorFlow and on JAX, through the real API and a real worker per backend.

The two backends draw different initial weights from the same seed, so curves are not compared point
by point: the learning rates of every step are the same schedule, the untrained model's first loss is
close, and the recommended learning rates agree within `DECADES` (in log10 of the learning rate), the
tolerance `bench/backends_agree.py` measured with room to spare (docs/design.md, "Which backend").
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import redis

from lrrt.client.api import Client
from lrrt.routing import queue_for
from lrrt.settings import Settings
from lrrt.store.keys import Keys

from .conftest import EXAMPLES, Worker

pytestmark = pytest.mark.e2e

#: Largest distance in decades between the backends' recommended LRs (and the valley and minimum rules') on the
#: digits job: bench/backends_agree.py measured at most 0.34 (recommended), 0.23 (valley, minimum) over 4 seeds.
DECADES = 0.5
#: Largest relative difference of the first step's loss (an untrained softmax over 10 classes: ~ln 10); measured
#: at most 0.044.
FIRST_LOSS_REL = 0.15


def digits_job() -> dict[str, Any]:
    return json.loads((EXAMPLES / "digits_job.json").read_text())


def submit(client: Client, job: dict[str, Any], backend: str | None) -> str:
    return client.submit(job["model"], job["dataset"], optimizers=job["optimizers"], loss=job["loss"],
                         sweep=job["sweep"], backend=backend)["id"]


def decades(a: float | None, b: float | None) -> float:
    assert a and b, (a, b)
    return abs(math.log10(a) - math.log10(b))


def test_the_same_job_on_both_backends_agrees(client: Client, jax_worker: Worker) -> None:
    job = digits_job()
    ids = {backend: submit(client, job, backend) for backend in ("tensorflow", "jax")}
    results = {}
    for backend, job_id in ids.items():
        done = client.wait(job_id, timeout=300)
        assert done["status"] == "succeeded", (backend, done.get("error"), jax_worker.tail())
        results[backend] = client.result(job_id)
    tf, jax = results["tensorflow"], results["jax"]
    assert tf["engine"]["backend"] == "tensorflow" and jax["engine"]["backend"] == "jax"
    assert jax["engine"]["backend_reason"] == "requested: the job asked for jax"
    for tf_arm, jax_arm in zip(tf["arms"], jax["arms"], strict=True):
        assert tf_arm["label"] == jax_arm["label"]
        steps = min(len(tf_arm["lrs"]), len(jax_arm["lrs"]))
        assert tf_arm["lrs"][:steps] == pytest.approx(jax_arm["lrs"][:steps], rel=1e-6)
        assert jax_arm["losses"][0] == pytest.approx(tf_arm["losses"][0], rel=FIRST_LOSS_REL)
        assert decades(tf_arm["recommended_lr"], jax_arm["recommended_lr"]) <= DECADES, (tf_arm, jax_arm)
        for rule in ("valley", "minimum"):  # steepest and slide move 2 decades between seeds on one backend alone
            assert decades(tf_arm["suggestions"][rule], jax_arm["suggestions"][rule]) <= DECADES, rule
    for result in (tf, jax):  # each recommendation is its best arm's, so the recommendations agree as the arms do
        best = next(arm for arm in result["arms"] if arm["label"] == result["recommendation"]["optimizer"])
        assert result["recommendation"]["learning_rate"] == best["recommended_lr"]


def test_auto_sends_the_digits_mlp_to_jax_and_the_record_keeps_its_queue(
    client: Client, jax_worker: Worker, redis_client: redis.Redis, settings: Settings, e2e_settings: Settings
) -> None:
    job = digits_job()
    job["sweep"]["num_steps"] = 40
    job_id = submit(client, job, None)
    done = client.wait(job_id, timeout=240)
    assert done["status"] == "succeeded", done.get("error")
    assert done["spec"]["backend"] == "auto"
    engine = client.result(job_id)["engine"]
    assert engine["backend"] == "jax"
    assert engine["backend_reason"].startswith("auto: dense model")
    queue = redis_client.hget(Keys(settings.key_prefix).job(job_id), "queue")
    assert queue.decode() == queue_for(e2e_settings.queue, "jax")
