"""Fan-out with real worker processes: a job's (arm, repeat) runs spread over two workers, a cancel
stops every run, and the stuck-run watchdog replaces a child that stops reporting so the job ends
instead of staying `running`. That a SIGKILL of one worker costs its run one redelivery and the job's
other runs none is the reaper's and the store's logic: tests/lrrt/test_coordinator_faults.py, in
milliseconds (tests/reliability/test_faults.py kills pool children and whole workers for real).

Two workers of one child each (the session's and `second`) share the e2e queue for this module; the
watchdog test runs a worker of its own, with the test-only hang hook, on a queue of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from lrrt.client.api import Client
from lrrt.queue import enqueue, make_celery
from lrrt.settings import Settings
from lrrt.spec import JobSpec
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys

from .conftest import Api, Worker, long_sweep, running_worker, wait_until

pytestmark = pytest.mark.e2e

#: No early stop, LRs that never diverge; each test sets the length it needs.
SWEEP = {"start_lr": 1e-5, "end_lr": 1e-3, "num_steps": 3000, "batch_size": 16, "divergence_threshold": None}
#: A job on two busy cores, and the watchdog's fresh child importing Keras.
RECOVERY_S = 240


def runs_sweeping(client: Client, job_id: str, count: int) -> dict[str, Any] | None:
    """The job once `count` of its runs have recorded steps (`progress.runs`)."""
    job = client.status(job_id)
    assert job["status"] in ("queued", "running"), job
    runs = (job.get("progress") or {}).get("runs") or []
    return job if sum(r["steps_done"] > 0 and r["state"] == "running" for r in runs) >= count else None


def test_runs_of_one_job_land_on_two_workers_and_start_equal(client: Client, second: Worker,
                                                             digits_mlp: dict[str, Any]) -> None:
    arms = [{"name": "sgd", "params": {"momentum": 0.9}}, "adam"]
    job = client.submit(digits_mlp, {"uri": "builtin:digits", "normalize": True}, optimizers=arms,
                        sweep={**SWEEP, "num_steps": 400})
    done = client.wait(job["id"], timeout=RECOVERY_S)
    assert done["status"] == "succeeded", done.get("error")
    assert done["progress"]["steps_done"] == done["progress"]["steps_total"] == 800
    result = client.result(job["id"])
    runs = result["engine"]["runs"]
    assert sorted((r["arm_index"], r["repeat"]) for r in runs) == [(0, 0), (1, 0)]
    assert len({r["worker"] for r in runs}) == 2, runs
    sgd, adam = result["arms"]
    assert sgd["fingerprint"] == adam["fingerprint"] and set(sgd["fingerprint"]) == {"initial_weights", "first_batch"}
    assert sgd["losses"][0] == adam["losses"][0]  # same weights, same first batch: the same first loss
    assert len(sgd["losses"]) == len(adam["losses"]) == 400


def hostname(worker: Worker) -> str:
    return worker.argv[worker.argv.index("--hostname") + 1]


def test_cancel_stops_every_run(client: Client, second: Worker, digits_mlp: dict[str, Any]) -> None:
    """Two runs sweeping on two workers, two waiting: all four end `cancelled`, none runs on."""
    job = client.submit(digits_mlp, "builtin:digits", optimizers=["sgd", "adam", "rmsprop", "nadam"],
                        sweep=long_sweep())
    wait_until(lambda: runs_sweeping(client, job["id"], 2), RECOVERY_S, "two runs sweeping at once", interval=0.2)
    client.cancel(job["id"])
    done = client.wait(job["id"], timeout=120)
    assert done["status"] == "cancelled"
    result = client.result(job["id"])
    assert [a["stop_reason"] for a in result["arms"]] == ["cancelled"] * 4
    ran = [a for a in result["arms"] if a["losses"]]
    assert len(ran) == len(result["engine"]["runs"]) >= 2
    assert all(len(a["losses"]) < 20_000 for a in ran)


@pytest.fixture()
def hanging_worker(server_env: dict[str, str], e2e_settings: Settings, redis_client: redis.Redis,
                   tmp_path: Path) -> Iterator[tuple[Worker, str]]:
    """A two-child worker on a queue of its own whose run (arm 1, repeat 0) blocks after its first chunk
    on its first attempt (`tests/e2e/hanging_worker.py`), with a short stuck-run floor."""
    queue = f"{e2e_settings.queue}-hang"
    # The floor also covers each run's first chunk (data, build, compile): 45 s leaves room on two busy cores.
    env = {**server_env, "LRRT_QUEUE": queue, "LRRT_STUCK_AFTER_S": "45"}
    with running_worker(env, tmp_path, f"hang-{e2e_settings.key_prefix}", e2e_settings, redis_client, 2,
                        module="tests.e2e.hanging_worker") as w:
        yield w, queue
    redis_client.delete(Keys(e2e_settings.key_prefix).worker_stuck(hostname(w)))


def test_watchdog_replaces_a_child_that_stops_reporting(hanging_worker: tuple[Worker, str], store: JobStore,
                                                        e2e_settings: Settings, api_server: Api,
                                                        digits_mlp: dict[str, Any]) -> None:
    worker, queue = hanging_worker
    spec = JobSpec.model_validate({"model": digits_mlp, "dataset": {"uri": "builtin:digits"},
                                   "optimizers": [{"name": "sgd"}, {"name": "adam"}], "sweep": {**SWEEP, "num_steps": 200}})
    job_id = store.create(tenant="alice", spec=spec, max_unfinished=50, queue=queue).job.id
    enqueue(make_celery(e2e_settings), job_id, queue)
    wait_until(lambda: store.r.hget(store.k.job(job_id), "run:1:stuck"), RECOVERY_S, "the watchdog to give up run 1")
    job = wait_until(lambda: (j := store.get(job_id)).status not in ("queued", "running") and j, RECOVERY_S,
                     "the job to end")
    assert job.status == "succeeded", job.error
    runs = {(r["arm_index"], r["repeat"]): r for r in store.result(job_id)["engine"]["runs"]}
    assert runs[(1, 0)]["attempts"] == 2, runs  # the hung run ran again, in a fresh child
    assert "no chunk for" in worker.tail(400)
    name = hostname(worker)
    ready = httpx.get(f"{api_server.url}/readyz", timeout=10).json()
    assert [s["worker"] for s in ready["stuck"]] == [name] and ready["stuck"][0]["job_id"] == job_id
    metrics = httpx.get(f"{api_server.url}/metrics", timeout=10).text
    assert "lrrt_workers_stuck 1.0" in metrics and "lrrt_stuck_runs_total" in metrics
