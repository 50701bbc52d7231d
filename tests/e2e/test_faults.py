"""Faults: an API restart, duplicate messages, a worker that dies on every attempt, a reservation lost
with its worker, a run over the memory limit. A job never stays `running` after its worker is gone, and
nothing recorded is lost. A worker or pool child killed mid-run: tests/reliability/test_faults.py kills
both for real; what then happens to the job (lease expiry, reaper, retry, the retry's curve) is
tests/lrrt/test_coordinator_faults.py's, in milliseconds."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from lrrt.client.api import Client
from lrrt.problems import CapExceeded
from lrrt.queue import enqueue, make_celery
from lrrt.reaper import _job_id_of, reap_once, restore_lost_reservations
from lrrt.settings import Settings
from lrrt.spec import JobSpec
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys
from lrrt.vetting.vet import vet_spec
from tests.keras_models import memory_bomb_json, unestimated_bomb_json

from .conftest import REPO, Api, Worker, long_sweep, running_worker, wait_for_steps, wait_until

pytestmark = pytest.mark.e2e

#: A lease expires LEASE_TTL_S (30 s) after its worker died; the reaper runs every ~10 s after that.
RECOVERY_S = 120


def test_api_restart_mid_job_loses_nothing(client: Client, api_server: Api, digits_mlp: dict[str, Any]) -> None:
    job = client.submit(digits_mlp, "builtin:digits", optimizers=["sgd", "adam"], sweep=long_sweep(),
                        labels={"kept": "yes"})
    before = wait_for_steps(client, job["id"])["progress"]["steps_done"]
    api_server.restart()
    after = wait_for_steps(client, job["id"], steps=before + 1)
    assert after["labels"] == {"kept": "yes"} and after["created_at"] == job["created_at"]
    client.cancel(job["id"])
    assert client.wait(job["id"], timeout=60)["status"] == "cancelled"
    assert len(client.result(job["id"])["arms"][0]["losses"]) >= before


def test_duplicate_message_runs_the_job_once(client: Client, store: JobStore, e2e_settings: Settings,
                                             digits_mlp: dict[str, Any]) -> None:
    job = client.submit(digits_mlp, "builtin:digits", sweep={"num_steps": 30, "batch_size": 16})
    enqueue(make_celery(e2e_settings), job["id"], e2e_settings.queue)  # as a broker redelivery would
    assert client.wait(job["id"], timeout=120)["status"] == "succeeded"
    time.sleep(1)  # let the second message reach the worker and be dropped
    record = store.get(job["id"])
    assert record.status == "succeeded" and record.attempts == 1


def test_worker_lost_on_every_attempt_fails_with_a_clear_error(redis_client: redis.Redis, settings: Settings) -> None:
    """The reaper requeues an orphan until the redelivery cap, then fails it keeping its curves.

    Uses a queue no worker consumes, so the test plays the dying worker itself."""
    lonely = settings.model_copy(update={"queue": f"{settings.queue}-unconsumed", "max_redeliveries": 1})
    store = JobStore(redis_client, Keys(lonely.key_prefix), result_ttl_s=lonely.result_ttl_s,
                     max_redeliveries=lonely.max_redeliveries)
    app = make_celery(lonely)
    spec = {"model": {"class_name": "Sequential", "config": {}}, "dataset": {"uri": "builtin:digits"},
            "optimizers": [{"name": "adam"}]}
    job_id = store.create(tenant="carol", spec=JobSpec.model_validate(spec), max_unfinished=5, queue=lonely.queue).job.id

    def run_and_die(attempt: int) -> None:
        claim = store.claim(job_id, store.new_token())
        assert (claim.outcome, claim.attempts) == ("claimed", attempt)
        store.record_chunk(job_id, {"steps_done": 3}, {"arm_index": 0, "arm_label": "adam", "repeat": 0,
                                                       "step_start": 0, "lrs": [1e-5, 1e-4, 1e-3],
                                                       "losses": [2.3, 2.2, 2.0], "val_losses": None})
        redis_client.delete(store.k.lease(job_id, 0))  # the worker died: its lease is gone
        redis_client.zadd(store.k.running(), {job_id: time.time() - 3600})  # and it started long ago

    run_and_die(1)
    assert reap_once(store, app, settings) == [(job_id, "requeued")]  # reaped by a process serving another queue
    assert store.get(job_id).status == "queued"
    assert redis_client.llen(lonely.queue) == 1  # re-sent to the queue it was submitted to
    run_and_die(2)
    assert reap_once(store, app, lonely) == [(job_id, "exhausted")]

    job = store.get(job_id)
    assert job.status == "failed" and job.error is not None
    assert job.error["type"] == "urn:lrrt:problem:worker-lost"
    assert "2 time(s)" in job.error["detail"] and "batch_size" in job.error["detail"]
    assert not redis_client.sismember(store.k.tenant_unfinished("carol"), job_id)  # tests/service/api has carol jobs too
    assert redis_client.zscore(store.k.running(), job_id) is None
    assert store.result(job_id)["arms"][0]["losses"] == [2.3, 2.2, 2.0]
    assert reap_once(store, app, lonely) == []  # nothing left to do


def test_message_reserved_by_a_worker_that_died_before_claiming_is_put_back(redis_client: redis.Redis,
                                                                           settings: Settings) -> None:
    """A worker takes two messages off the queue and is killed before claiming: the job still queued
    gets its message back on the queue; the one another worker has meanwhile claimed does not."""
    lonely = settings.model_copy(update={"queue": f"{settings.queue}-reserved"})
    store = JobStore(redis_client, Keys(lonely.key_prefix), result_ttl_s=lonely.result_ttl_s,
                     max_redeliveries=lonely.max_redeliveries)
    app = make_celery(lonely)
    spec = JobSpec.model_validate({"model": {"class_name": "Sequential", "config": {}}, "dataset": {"uri": "builtin:digits"}})
    queued, running = (store.create(tenant="dave", spec=spec, max_unfinished=5).job.id for _ in range(2))
    for job_id in (queued, running):
        enqueue(app, job_id, lonely.queue)
    reserve_and_die = (
        "import os\n"
        "from lrrt.queue import make_celery\n"
        "from lrrt.settings import Settings\n"
        f"app = make_celery(Settings(redis_url={lonely.redis_url!r}, queue={lonely.queue!r}))\n"
        "with app.connection_for_read() as conn:\n"
        f"    q = conn.SimpleQueue({lonely.queue!r}, no_ack=False)\n"
        "    q.get(timeout=10); q.get(timeout=10)\n"
        "    os._exit(0)  # killed: no chance to give the messages back\n"
    )
    subprocess.run([sys.executable, "-c", reserve_and_die], cwd=REPO, check=True, timeout=60)
    assert redis_client.llen(lonely.queue) == 0
    assert store.claim(running, store.new_token()).outcome == "claimed"  # another worker runs this one
    try:
        assert restore_lost_reservations(store, app, older_than_s=0) == [queued]
        assert redis_client.llen(lonely.queue) == 1
        assert restore_lost_reservations(store, app, older_than_s=0) == []  # put back once
    finally:  # the running job's reserved copy: remove it from the broker's shared unacked set
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            for tag in redis_client.zrange(channel.unacked_index_key, 0, -1):
                if _job_id_of(redis_client.hget(channel.unacked_key, tag)) == running:
                    redis_client.zrem(channel.unacked_index_key, tag)
                    redis_client.hdel(channel.unacked_key, tag)


#: The memory guard's limit for `small_memory_worker`: a TensorFlow pool child holds ~0.85 GiB once Keras is
#: in and a digits MLP fit adds ~30 MiB (docs/design.md); the bomb at 4096 px and batch 16 would add over
#: 4 GiB (one conv output alone is 16 x 4094 x 4094 x 4 floats), so it is stopped near 3.4 GiB resident
#: (the limit plus worker.memory.FIRST_STEP_BYTES above the child's own ~0.85 GiB).
MEMORY_LIMIT = 1536 * 1024 ** 2


@pytest.fixture()
def small_memory_worker(server_env: dict[str, str], e2e_settings: Settings, redis_client: redis.Redis,
                        tmp_path: Path) -> Iterator[tuple[Worker, str]]:
    """A one-child worker on a queue of its own whose runs may each add MEMORY_LIMIT to its resident size."""
    queue = f"{e2e_settings.queue}-mem"
    env = {**server_env, "LRRT_QUEUE": queue, "LRRT_MEMORY_LIMIT_BYTES": str(MEMORY_LIMIT)}
    with running_worker(env, tmp_path, f"mem-{e2e_settings.key_prefix}", e2e_settings, redis_client) as w:
        yield w, queue


def test_run_over_the_memory_limit_fails_once_and_the_next_job_runs(small_memory_worker: tuple[Worker, str],
                                                                    store: JobStore, e2e_settings: Settings,
                                                                    digits_mlp: dict[str, Any]) -> None:
    """Issue 20: a model every check at submission admits (the estimate cannot see inside TimeDistributed)
    grows the worker's child past its memory limit.
    Its job fails with `resource-exhausted` after one attempt (no redelivery: the job ended before the
    child did), and the job queued behind it on the same one-child worker runs in the fresh child.

    Sent straight to the store and queue, as a deployment whose submit-time estimate missed it would."""
    worker, queue = small_memory_worker
    app = make_celery(e2e_settings)

    def submit(model: dict[str, Any], sweep: dict[str, Any]) -> str:
        spec = JobSpec.model_validate({"model": model, "dataset": {"uri": "builtin:digits"}, "sweep": sweep})
        job_id = store.create(tenant="alice", spec=spec, max_unfinished=50, queue=queue).job.id
        enqueue(app, job_id, queue)
        return job_id

    def bomb_spec(model: dict[str, Any]) -> JobSpec:
        return JobSpec.model_validate({"model": model, "dataset": {"uri": "builtin:digits"},
                                       "sweep": {"num_steps": 20, "batch_size": 16}})

    # The premise: every check at submission admits it (the worker runs them again before it builds),
    # while the same bomb without the wrapper is refused there with the estimate.
    caps = e2e_settings.model_copy(update={"memory_limit_bytes": MEMORY_LIMIT})
    vet_spec(bomb_spec(unestimated_bomb_json(4096)), caps, dataset=False)
    with pytest.raises(CapExceeded, match="largest batch size"):
        vet_spec(bomb_spec(memory_bomb_json(4096)), caps, dataset=False)
    bomb = submit(unestimated_bomb_json(4096), {"num_steps": 20, "batch_size": 16})
    small = submit(digits_mlp, {"num_steps": 30, "batch_size": 16})
    done = wait_until(lambda: (j := store.get(small)).status not in ("queued", "running") and j, RECOVERY_S,
                      "the job behind the memory bomb to end")
    assert done.status == "succeeded", done.error
    failed = store.get(bomb)
    assert failed is not None and failed.status == "failed" and failed.error is not None, failed
    assert failed.attempts == 1 and store.r.hget(store.k.job(bomb), "run:0:attempts") == b"1"
    assert failed.error["type"] == "urn:lrrt:problem:resource-exhausted"
    assert failed.error["limit_bytes"] == MEMORY_LIMIT < failed.error["used_bytes"]
    assert "LRRT_MEMORY_LIMIT_BYTES" in failed.error["detail"] and "batch_size" in failed.error["detail"]
    assert worker.tail(400).count("exited with 'exitcode 71'") == 1  # the guard replaced the child once (tasks.MEMORY_EXIT_CODE)
