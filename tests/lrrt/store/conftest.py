"""The job store's state machine on the session's Redis, under a key prefix of each test's own, so
that reaping with no grace period touches only that test's jobs. No worker, no Celery, no Keras:
each transition is one Lua script, and these tests drive them directly, in milliseconds."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from lrrt.spec import JobSpec
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys

MODEL = {"class_name": "Sequential", "config": {"layers": []}}


def spec(arms: int = 1, repeats: int = 1, candidates: int | None = None) -> JobSpec:
    """A job with `arms` x `repeats` range-test runs and, with `candidates`, that many confirm
    runs per arm."""
    sweep: dict[str, Any] = {"repeats": repeats}
    if candidates:
        sweep["confirm"] = {"candidates": candidates}
    dataset = {"uri": "builtin:digits", "validation_split": 0.2}
    return JobSpec.model_validate({"model": MODEL, "dataset": dataset, "sweep": sweep,
                                   "optimizers": [{"name": "adam"}, {"name": "sgd"}, {"name": "rmsprop"}][:arms]})


@pytest.fixture()
def jobs(store: JobStore) -> JobStore:
    """A store whose keys are this test's alone; a run may be claimed twice (one redelivery)."""
    return JobStore(store.r, Keys(f"{store.k.prefix}:sm-{uuid.uuid4().hex[:8]}"), result_ttl_s=60, max_redeliveries=1)


def create(jobs: JobStore, **shape: Any) -> str:
    return jobs.create(tenant="t", spec=spec(**shape), max_unfinished=100, queue="q-tf").job.id


def lose_worker(jobs: JobStore, job_id: str, run: int) -> None:
    """The worker running `run` died: its lease is gone, and the job was claimed longer ago than a lease lives."""
    jobs.r.delete(jobs.k.lease(job_id, run))
    jobs.r.zadd(jobs.k.running(), {job_id: 0})


def run_state(jobs: JobStore, job_id: str, run: int) -> str | None:
    raw = jobs.r.hget(jobs.k.job(job_id), f"run:{run}:state")
    return raw.decode() if isinstance(raw, bytes) else raw
