"""`backend` in the spec: the API routes a job to the queue of a backend with live workers (read from
their heartbeats), or answers 422 naming the backends served. No worker runs here: heartbeats are
written the way `worker/heartbeat.py` writes them, and the message is looked for in the queue lists."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

import lrrt.vetting.summary as summary_walk
from lrrt.reaper import STRANDED_AFTER_S, reap_once
from lrrt.routing import queue_for
from lrrt.settings import Settings
from lrrt.store.fleet import Fleet
from lrrt.store.jobs import ISO_FORMAT, JobStore
from lrrt.store.keys import Keys
from service.routing import LiveBackends
from tests.service.api.conftest import ALICE, make_spec, queued_job_ids


@pytest.fixture(autouse=True)
def fresh_routing(app: FastAPI, settings: Settings) -> Iterator[None]:
    """Each test starts, and leaves the session's app, with no cached read of the heartbeats, as a freshly
    started API process would: the heartbeats a test writes before its first submission are the ones seen."""
    def fresh() -> None:
        app.state.live_backends = LiveBackends(app.state.fleet)

    fresh()
    yield
    fresh()


@pytest.fixture
def heartbeats(redis_client: redis.Redis, settings: Settings) -> Iterator[Callable[..., None]]:
    """Write live worker heartbeats ({hostname: backend}); all are removed after the test."""
    keys = Keys(settings.key_prefix)
    written: list[str] = []

    def beat(**backends: str) -> None:
        for hostname, backend in backends.items():
            key = keys.worker_heartbeat(hostname)
            redis_client.set(key, json.dumps({"hostname": hostname, "backend": backend, "device": "cpu"}), ex=30)
            written.append(key)

    yield beat
    if written:
        redis_client.delete(*written)


def submit(client: TestClient, **fields: object) -> dict:
    response = client.post("/v1/jobs", headers=ALICE, json=make_spec(**fields))
    assert response.status_code == 202, response.text
    return response.json()


def test_auto_with_both_backends_sends_a_small_dense_model_to_jax(client: TestClient, redis_client: redis.Redis,
                                                                   settings: Settings, heartbeats: Callable[..., None]) -> None:
    heartbeats(tf1="tensorflow", jax1="jax")
    job = submit(client)
    assert job["spec"]["backend"] == "auto"
    assert job["id"] in queued_job_ids(redis_client, queue_for(settings.queue, "jax"))
    assert job["id"] not in queued_job_ids(redis_client, settings.queue)


def test_a_routed_submission_walks_its_model_json_once(client: TestClient, heartbeats: Callable[..., None],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The depth cap, the allow-list, the parameter cap and the `auto` rule read one summary of the model
    JSON (`JobSpec.model_summary`): each of its objects is judged by the allow-list exactly once."""
    judged: list[int] = []
    rule = summary_walk.node_problems
    monkeypatch.setattr(summary_walk, "node_problems", lambda node, where: judged.append(id(node)) or rule(node, where))
    heartbeats(tf1="tensorflow", jax1="jax")  # both live: `auto` runs the rule, which reads the model too
    spec = make_spec()

    def objects(value: object) -> int:
        if isinstance(value, dict):
            return 1 + sum(objects(v) for v in value.values())
        return sum(objects(v) for v in value) if isinstance(value, list) else 0

    submit(client, **spec)
    assert len(judged) == objects(spec["model"])


def test_auto_uses_the_only_live_backend(client: TestClient, redis_client: redis.Redis, settings: Settings,
                                         heartbeats: Callable[..., None]) -> None:
    heartbeats(tf1="tensorflow")
    job = submit(client)
    assert job["id"] in queued_job_ids(redis_client, settings.queue)


def test_a_named_backend_goes_to_its_queue(client: TestClient, redis_client: redis.Redis, settings: Settings,
                                           heartbeats: Callable[..., None]) -> None:
    heartbeats(tf1="tensorflow", jax1="jax")
    job = submit(client, backend="tensorflow")
    assert job["spec"]["backend"] == "tensorflow"
    assert job["id"] in queued_job_ids(redis_client, settings.queue)


def test_a_backend_no_live_worker_runs_is_422_naming_the_served_ones(client: TestClient, heartbeats: Callable[..., None]) -> None:
    heartbeats(tf1="tensorflow")
    response = client.post("/v1/jobs", headers=ALICE, json=make_spec(backend="jax"))
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith(":backend-unavailable")
    assert problem["served"] == ["tensorflow"] and problem["requested"] == "jax"
    assert "lrrt worker --backend jax" in problem["detail"]


def test_a_heartbeat_without_a_backend_serves_no_backend(client: TestClient, redis_client: redis.Redis,
                                                         settings: Settings) -> None:
    """Every worker writes its backend (worker/heartbeat.py); a heartbeat without one is not read as any."""
    key = Keys(settings.key_prefix).worker_heartbeat("no-backend")
    redis_client.set(key, "{}", ex=30)
    try:
        job = submit(client, backend="jax")  # as with no live worker at all: queued for the backend asked
        assert job["id"] in queued_job_ids(redis_client, queue_for(settings.queue, "jax"))
    finally:
        redis_client.delete(key)


def test_with_no_live_worker_a_job_is_queued_for_the_backend_it_names(client: TestClient, redis_client: redis.Redis,
                                                                      settings: Settings) -> None:
    """A deployment restarting its workers does not turn submissions away: the job waits in its queue."""
    job = submit(client, backend="jax")
    assert job["id"] in queued_job_ids(redis_client, queue_for(settings.queue, "jax"))
    assert submit(client)["id"] in queued_job_ids(redis_client, settings.queue)


def test_an_unknown_backend_is_a_validation_error(client: TestClient) -> None:
    response = client.post("/v1/jobs", headers=ALICE, json=make_spec(backend="torch"))
    assert response.status_code == 422
    assert response.json()["type"].endswith(":validation-error")


def test_the_heartbeats_are_scanned_once_per_cache_age(redis_client: redis.Redis, settings: Settings,
                                                       heartbeats: Callable[..., None]) -> None:
    keys = Keys(settings.key_prefix)
    live = LiveBackends(Fleet(redis.Redis.from_url(settings.redis_url, decode_responses=True), keys), max_age_s=0.5)
    heartbeats(tf1="tensorflow")
    assert live.get() == {"tensorflow": "cpu"}
    heartbeats(jax1="jax")
    assert live.get() == {"tensorflow": "cpu"}  # the cached read: no scan
    time.sleep(0.6)
    assert live.get() == {"tensorflow": "cpu", "jax": "cpu"}
    redis_client.delete(keys.worker_heartbeat("jax1"))
    assert live.get(fresh=True) == {"tensorflow": "cpu"}


def test_a_backend_started_within_the_cache_age_is_not_refused(client: TestClient, redis_client: redis.Redis,
                                                               settings: Settings, heartbeats: Callable[..., None]) -> None:
    """The 422 is answered from a fresh scan only: the cache may route late, never refuse wrongly."""
    heartbeats(tf1="tensorflow")
    submit(client)  # fills the app's cache with TensorFlow alone
    heartbeats(jax1="jax")
    job = submit(client, backend="jax")
    assert job["id"] in queued_job_ids(redis_client, queue_for(settings.queue, "jax"))


def test_an_idempotent_replay_returns_the_job_before_any_routing(app: FastAPI, client: TestClient, redis_client: redis.Redis,
                                                                 settings: Settings, heartbeats: Callable[..., None]) -> None:
    """A retry of a job made while JAX was served gets that job back, though JAX is no longer served."""
    keys = Keys(settings.key_prefix)
    app.state.live_backends.max_age_s = 0.0  # every submission scans afresh: only the order of checks is tested
    heartbeats(jax1="jax")
    key = {**ALICE, "Idempotency-Key": "replay-before-routing"}
    first = client.post("/v1/jobs", headers=key, json=make_spec(backend="jax"))
    assert first.status_code == 202
    redis_client.delete(keys.worker_heartbeat("jax1"))
    heartbeats(tf1="tensorflow")
    assert client.post("/v1/jobs", headers=ALICE, json=make_spec(backend="jax")).status_code == 422  # not served now
    again = client.post("/v1/jobs", headers=key, json=make_spec(backend="jax"))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert queued_job_ids(redis_client, queue_for(settings.queue, "jax")).count(first.json()["id"]) == 1
    other = client.post("/v1/jobs", headers=key, json=make_spec(backend="jax", labels={"team": "other"}))
    assert other.status_code == 422 and other.json()["type"].endswith(":idempotency-key-reused")


@pytest.fixture
def reap(app: FastAPI, store: JobStore, settings: Settings) -> Callable[[], list[tuple[str, str]]]:
    """One real reaper pass (`reap_once`, as the API's thread and every worker's heartbeat run it)."""
    return lambda: reap_once(store, app.state.celery, settings)


def waited(redis_client: redis.Redis, settings: Settings, job_id: str) -> None:
    """Date the job's submission back past `STRANDED_AFTER_S`, as if it had waited that long."""
    then = datetime.now(timezone.utc) - timedelta(seconds=STRANDED_AFTER_S + 1)
    redis_client.hset(Keys(settings.key_prefix).job(job_id), "created_at", then.strftime(ISO_FORMAT))


def test_an_auto_job_stranded_on_a_backend_whose_workers_left_moves_to_a_live_one(
        client: TestClient, redis_client: redis.Redis, settings: Settings, store: JobStore,
        heartbeats: Callable[..., None], reap: Callable[[], list[tuple[str, str]]]) -> None:
    """The routing read saw a JAX worker that stopped right after: the job is not left on a queue nobody reads."""
    heartbeats(tf1="tensorflow", jax1="jax")
    job = submit(client)
    jax_queue = queue_for(settings.queue, "jax")
    assert job["id"] in queued_job_ids(redis_client, jax_queue)
    routed = store.get(job["id"])  # the choice made at submission, kept for the result's engine.backend_reason
    assert routed is not None and routed.backend == "jax" and routed.backend_reason is not None
    assert routed.backend_reason.startswith("auto: ")
    redis_client.delete(Keys(settings.key_prefix).worker_heartbeat("jax1"))  # the JAX worker stopped
    assert (job["id"], "rerouted") not in reap()  # not yet: a worker restarting in place keeps its jobs
    assert job["id"] in queued_job_ids(redis_client, jax_queue)

    waited(redis_client, settings, job["id"])
    assert (job["id"], "rerouted") in reap()
    assert job["id"] in queued_job_ids(redis_client, settings.queue)
    assert job["id"] not in queued_job_ids(redis_client, jax_queue)
    record = store.get(job["id"])
    assert record is not None and record.queue == settings.queue and record.status == "queued"
    assert record.backend == "tensorflow" and record.backend_reason is not None
    assert record.backend_reason.startswith("auto: rerouted, no jax worker was live to start it")
    assert (job["id"], "rerouted") not in reap()  # moved once: the next pass finds it where it belongs


def test_a_stranded_job_stays_when_it_named_its_backend_was_claimed_or_no_worker_is_live(
        client: TestClient, redis_client: redis.Redis, settings: Settings, store: JobStore,
        heartbeats: Callable[..., None], reap: Callable[[], list[tuple[str, str]]]) -> None:
    """A job that asked for JAX waits for JAX; a job whose runs started keeps its backend (runs never mix
    backends); with no worker live at all (a deployment restarting), nothing moves."""
    heartbeats(tf1="tensorflow", jax1="jax")
    named = submit(client, backend="jax")
    started = submit(client)
    redis_client.hset(Keys(settings.key_prefix).job(started["id"]), "attempts", 1)  # requeued after a lost worker
    idle = submit(client)
    for job in (named, started, idle):
        waited(redis_client, settings, job["id"])
    jax_queue = queue_for(settings.queue, "jax")
    keys = Keys(settings.key_prefix)

    redis_client.delete(keys.worker_heartbeat("tf1"), keys.worker_heartbeat("jax1"))
    assert idle["id"] not in {job_id for job_id, _ in reap()}  # no live worker: wait where routed

    heartbeats(tf2="tensorflow")
    moved = {job_id for job_id, outcome in reap() if outcome == "rerouted"}
    assert idle["id"] in moved and named["id"] not in moved and started["id"] not in moved
    for kept in (named, started):
        assert kept["id"] in queued_job_ids(redis_client, jax_queue)
        assert kept["id"] not in queued_job_ids(redis_client, settings.queue)  # not even a spare copy
        record = store.get(kept["id"])
        assert record is not None and record.queue == jax_queue
