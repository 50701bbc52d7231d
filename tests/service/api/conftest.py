"""API test fixtures: the app on the session's Redis prefix, clients per tenant, a valid spec, and a
fake worker that drives the job store the way `worker.tasks` does (no Celery worker, no Keras).

Submitted jobs stay `queued` here: tests assert their message sits in the Celery queue list in Redis.
Tests of running and finished jobs move the record with the store's own worker-side calls (claim,
record_chunk, finish); they test the API's reading of those states, not the worker.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lrrt.progress import Chunk, JobProgress
from lrrt.results import chunk_record
from lrrt.settings import Settings
from lrrt.store.jobs import JobStore
from service.app import create_app

ALICE = {"Authorization": "Bearer key-alice"}
BOB = {"Authorization": "Bearer key-bob"}

MLP = {
    "module": "keras",
    "class_name": "Sequential",
    "config": {
        "name": "mlp",
        "layers": [
            {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
             "config": {"batch_shape": [None, 64], "dtype": "float32", "name": "input"}},
            {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "hidden", "units": 32, "activation": "relu",
                        "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                                               "config": {"seed": None}, "registered_name": None}}},
            {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "out", "units": 10, "activation": "softmax"}},
        ],
    },
    "registered_name": None,
}


def make_spec(**overrides: Any) -> dict[str, Any]:
    """A valid submission for the digits MLP with two arms; keyword arguments replace top-level fields."""
    spec: dict[str, Any] = {
        "model": copy.deepcopy(MLP),
        "dataset": {"uri": "builtin:digits"},
        "loss": "sparse_categorical_crossentropy",
        "optimizers": [{"name": "sgd", "label": "SGD", "params": {"momentum": 0.9}}, {"name": "adam"}],
        "sweep": {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 50, "batch_size": 32},
        "labels": {"team": "vision"},
    }
    spec.update(overrides)
    return spec


@pytest.fixture(scope="session")
def settings(settings: Settings) -> Settings:
    """The session's settings under a key prefix and queue of the API tests' own. The cross-process
    tests (tests/e2e, tests/reliability) keep a worker live on the session's prefix, and these tests
    assert what the API answers with no worker (routing, `/readyz`, queued jobs), whatever order the
    directories run in. The session's cleanup deletes `<session prefix>*`, which covers this one."""
    prefix = f"{settings.key_prefix}-api"
    return settings.model_copy(update={"key_prefix": prefix, "queue": prefix})


@pytest.fixture(scope="session")
def app(settings: Settings) -> FastAPI:
    return create_app(settings, reaper_interval_s=None)


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def queued_job_ids(redis_client: redis.Redis, queue: str) -> list[str]:
    """Job ids of the Celery messages waiting in the queue list (Celery protocol 2, JSON body)."""
    ids = []
    for raw in redis_client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        assert message["headers"]["task"] == "lrrt.run_job"
        ids.append(args[0])
    return ids


def submit(client: TestClient, headers: dict[str, str] = ALICE, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=make_spec(**overrides), headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


class FakeWorker:
    """Moves a job through running -> terminal with the store calls a real worker makes."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.tokens: dict[str, str] = {}
        self.progress: dict[str, JobProgress] = {}

    def start(self, job_id: str) -> None:
        token = self.store.new_token()
        assert self.store.claim(job_id, token).outcome == "claimed"
        self.tokens[job_id] = token

    def chunk(self, job_id: str, arm_index: int, label: str, step_start: int, n: int, total: int = 50) -> None:
        """Record `n` points of one arm as the worker does: the real progress object and chunk record."""
        lrs = [1e-4 * 1.2 ** (step_start + i) for i in range(n)]
        losses = [2.3 - 0.01 * (step_start + i) for i in range(n)]
        job = self.store.get(job_id)
        assert job is not None
        progress = self.progress.setdefault(job_id, JobProgress(job.spec))
        chunk = Chunk(arm_index=arm_index, arm_label=label, repeat=0, step_start=step_start, lrs=lrs, losses=losses,
                      val_losses=None, steps_done=step_start + n, steps_total=total, job_steps_done=step_start + n,
                      job_steps_total=total)
        self.store.record_chunk(job_id, progress.update(chunk), chunk_record(chunk))

    def finish(self, job_id: str, status: str, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None) -> None:
        assert self.store.finish(job_id, status, result=result, error=error, token=self.tokens.get(job_id, ""))


@pytest.fixture()
def worker(store: JobStore) -> FakeWorker:
    return FakeWorker(store)


def result_for(labels: list[str], points: int = 5) -> dict[str, Any]:
    """A finished result in the engine's shape."""
    lrs = [1e-4 * 10 ** (i / 2) for i in range(points)]
    losses = [2.3, 2.0, 1.2, 0.9, 3.5][:points]
    arm = {"optimizer": {"name": "adam", "params": {}}, "lrs": lrs, "losses": losses, "smoothed_losses": losses,
           "loss_deltas": [0.0] * points, "val_losses": None, "stop_reason": "diverged",
           "suggestions": {"steepest": 1e-3, "valley": 9e-4, "minimum": 1e-4, "slide": 1.5e-3},
           "lr_bounds": {"base_lr": 1e-4, "max_lr": 4e-3}, "recommended_lr": 1e-3, "min_loss": 0.9,
           "min_loss_lr": lrs[3], "repeats": None, "diagnostics": []}
    return {"arms": [{**arm, "label": label} for label in labels], "best_arm": labels[0],
            "recommendation": {"optimizer": labels[0], "learning_rate": 1e-3,
                               "one_cycle": {"max_lr": 4e-3, "base_lr": 1.6e-4}},
            "engine": {"keras": "3.x", "backend": "tensorflow", "device": "CPU:0", "seconds": 1.0}}
