"""Faults against a real stack (our own AOF Redis, a Celery prefork worker, the API, Keras on the CPU):
SIGKILL of the worker's pool children and of the whole worker in the middle of jobs, Redis killed and
restarted while jobs are queued, running and finished, the API restarted while clients poll, and a
tenant's unfinished-jobs cap filled by concurrent clients.

After each: every job is `succeeded`, `cancelled` or `failed` with a problem that says why, none is lost
or stuck in `queued`/`running`, and every served curve is intact (`outcomes`). Each test reports a row
(`outcomes.report`) that docs/reliability.md quotes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from lrrt.client.api import Client, LrrtError
from lrrt.coordinator import Claimed
from lrrt.settings import Settings
from lrrt.spec import JobSpec
from tests.e2e.conftest import REPO, children_of, wait_until

from .conftest import CAP, Stack
from .outcomes import assert_nothing_unfinished, check_all, listed_ids, report, wait_all

pytestmark = pytest.mark.e2e

#: A lease expires 30 s after its worker died; the reaper (every 10 s) then re-sends the job, and a pool
#: child that was killed re-imports Keras first: allow for all of it on two busy cores.
RECOVERY_S = 240
#: ~10-20 s of sweeping per job on this CPU once warm: long enough to be killed mid-way.
MEDIUM = {"start_lr": 1e-5, "end_lr": 1e-3, "num_steps": 3000, "batch_size": 16, "divergence_threshold": None}
#: Runs until cancelled.
LONG = {**MEDIUM, "num_steps": 20_000}
#: A few steps: the job's cost is the fixed per-job cost.
TINY = {"start_lr": 1e-4, "end_lr": 1e-2, "num_steps": 4, "batch_size": 16}


def running_with_steps(client: Client, ids: list[str], since: dict[str, tuple[int, int]] | None = None) -> str | None:
    """The first of `ids` that is running and has recorded a step, and, given `since` (attempt and steps of
    each job at an earlier moment), has recorded more since then: a job still marked `running` by a worker
    that was just killed does not count."""
    for job_id in ids:
        job = client.status(job_id)
        mark = (job["attempts"], (job.get("progress") or {}).get("steps_done", 0))
        if job["status"] == "running" and mark[1] > 0 and (since is None or mark > since.get(job_id, (0, 0))):
            return job_id
    return None


def marks(client: Client, ids: list[str]) -> dict[str, tuple[int, int]]:
    return {j: (job["attempts"], (job.get("progress") or {}).get("steps_done", 0))
            for j, job in ((j, client.status(j)) for j in ids)}


def steps_done(client: Client, job_id: str) -> int:
    return (client.status(job_id).get("progress") or {}).get("steps_done", 0)


# ------------------------------------------------------------------------------------------ SIGKILL
@pytest.mark.parametrize("kills", [pytest.param(2, id="2-kills"), pytest.param(6, id="6-kills", marks=pytest.mark.slow)])
def test_sigkill_worker_mid_job_repeatedly(live: Stack, digits_mlp: dict[str, Any], kills: int) -> None:
    """Alternately SIGKILL every pool child (as the OOM killer would) and the whole worker (parent and
    children, no clean-up), each time while a job is mid-sweep and others are queued."""
    client = live.client("t1")
    ids = [client.submit(digits_mlp, "builtin:digits", sweep=MEDIUM)["id"] for _ in range(min(CAP, kills + 2))]
    what = []
    since: dict[str, tuple[int, int]] = {}
    for i in range(kills):
        victim = wait_until(lambda since=since: running_with_steps(client, ids, since), RECOVERY_S, "a job sweeping again",
                            interval=0.3)
        since = marks(client, ids)
        if i % 2 == 0:
            for child in children_of(live.worker.pid):
                os.kill(child, signal.SIGKILL)
            what.append(f"children@{victim[:6]}")
        else:
            live.worker.stop(signal.SIGKILL)
            live.worker.start()
            what.append(f"worker@{victim[:6]}")
    final = wait_all(client, ids, timeout=RECOVERY_S * 2)
    outcomes = check_all(client, final, start_lr=MEDIUM["start_lr"])
    # A job whose worker died on every attempt fails with the worker-lost problem; nothing else may fail.
    assert set(outcomes) <= {"succeeded", "failed:worker-lost"}, outcomes
    assert set(ids) <= listed_ids(client)
    assert_nothing_unfinished(live.store, ["t1"])
    report({"fault": "SIGKILL worker pool children / whole worker mid-job", "tries": kills, "jobs": len(ids),
            "kills": what, "outcomes": dict(outcomes),
            "attempts": sorted(live.store.get(j).attempts for j in ids)})


#: A consumer that takes one message off the queue without acknowledging it, then dies as SIGKILL would
#: (no ack, no reject, no restore): what a worker killed between receiving a message and starting it does.
RESERVE_AND_DIE = """
import os
from lrrt.queue import make_celery

with make_celery().connection() as connection:
    queue = connection.SimpleQueue(os.environ["LRRT_QUEUE"], no_ack=False)
    queue.get(timeout=60)
    os._exit(0)
"""


@pytest.mark.slow
def test_job_reserved_by_a_killed_consumer_does_not_stay_queued(live: Stack, digits_mlp: dict[str, Any]) -> None:
    """Found by the 6-kill soak: a whole-worker SIGKILL can leave messages of jobs that never started in the
    broker's `unacked` hash; they are redelivered only after `visibility_timeout` (job time limit + 720 s:
    72 minutes by default), so those jobs stay `queued` that long. Reproduced deterministically here."""
    live.worker.stop(signal.SIGKILL)
    client = live.client("t9")
    job_id = client.submit(digits_mlp, "builtin:digits", sweep=TINY)["id"]
    died = subprocess.run([sys.executable, "-c", RESERVE_AND_DIE], env=live.env, cwd=REPO, capture_output=True,
                          timeout=120)
    assert died.returncode == 0, died.stderr.decode()[-2000:]
    assert live.r.llen(live.settings.queue) == 0 and live.r.hlen("unacked") >= 1  # reserved, then orphaned
    live.worker.start()
    try:
        final = wait_all(client, [job_id], timeout=RECOVERY_S)
    finally:
        if client.status(job_id)["status"] == "queued":
            client.cancel(job_id)  # leave no stuck job behind for the tests that follow
    assert final[job_id]["status"] == "succeeded"
    report({"fault": "message reserved by a consumer killed before it started the job", "tries": 1, "jobs": 1,
            "outcomes": {final[job_id]["status"]: 1}})


# ------------------------------------------------------------------------------------------ Redis
def test_redis_killed_and_restarted_with_jobs_queued_running_and_finished(live: Stack, digits_mlp: dict[str, Any]) -> None:
    """SIGKILL our redis-server (AOF, fsync every second) and start it again on the same directory."""
    client = live.client("t2")
    finished = client.submit(digits_mlp, "builtin:digits", sweep=TINY)["id"]
    assert wait_all(client, [finished], RECOVERY_S)[finished]["status"] == "succeeded"
    finished_result = client.result(finished)
    running = client.submit(digits_mlp, "builtin:digits", sweep=LONG)["id"]
    wait_until(lambda: steps_done(client, running) > 0, RECOVERY_S, "the long job to record steps", interval=0.3)
    queued = [client.submit(digits_mlp, "builtin:digits", sweep=TINY)["id"] for _ in range(3)]
    before = {j: client.status(j)["status"] for j in [finished, running, *queued]}

    live.redis.restart(down_s=2)
    time.sleep(3)
    assert live.worker.alive(), f"the worker process exited on the Redis restart:\n{live.worker.tail(12)}"

    # The running job keeps recording into the restarted Redis (the worker rode out the outage).
    at_restart = steps_done(client, running)
    wait_until(lambda: steps_done(client, running) > at_restart, RECOVERY_S, "the running job to record again",
               interval=0.5)
    client.cancel(running)
    final = wait_all(client, [finished, running, *queued], timeout=RECOVERY_S)
    outcomes = check_all(client, final)
    assert final[finished]["status"] == "succeeded" and client.result(finished) == finished_result
    assert final[running]["status"] == "cancelled"
    assert all(final[j]["status"] == "succeeded" for j in queued), {j: final[j]["status"] for j in queued}
    assert_nothing_unfinished(live.store, ["t2"])
    report({"fault": "Redis SIGKILL + restart (AOF everysec)", "tries": 1, "jobs": len(final),
            "states_at_kill": before, "outcomes": dict(outcomes)})


def test_redis_down_at_submit_and_poll_is_503_and_leaves_no_phantom_job(live: Stack, digits_mlp: dict[str, Any]) -> None:
    """With Redis down, submitting and polling answer 503 problems with Retry-After (quickly, no hang);
    once it is back, the refused submission left no record behind and the earlier job is intact."""
    client = live.client("t8")
    earlier = client.submit(digits_mlp, "builtin:digits", sweep=TINY)["id"]
    assert wait_all(client, [earlier], RECOVERY_S)[earlier]["status"] == "succeeded"
    jobs_before = live.r.zcard(live.store.k.tenant_jobs("t8"))
    live.redis.stop()
    try:
        headers = {"Authorization": "Bearer key-t8"}
        started = time.monotonic()
        submit = httpx.post(f"{live.api.url}/v1/jobs", headers=headers, timeout=60,
                            json={"model": digits_mlp, "dataset": {"uri": "builtin:digits"}, "sweep": TINY})
        poll = httpx.get(f"{live.api.url}/v1/jobs/{earlier}", headers=headers, timeout=60)
        took = time.monotonic() - started
    finally:
        live.redis.start()
    for answer in (submit, poll):
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json" and int(answer.headers["Retry-After"]) > 0
    assert took < 20, f"the API took {took:.1f} s to answer with Redis down"
    assert live.r.zcard(live.store.k.tenant_jobs("t8")) == jobs_before
    assert client.status(earlier)["status"] == "succeeded"
    check_all(client, {earlier: client.status(earlier)})
    assert_nothing_unfinished(live.store, ["t8"])
    report({"fault": "Redis down during submit and poll", "tries": 2, "answers": [submit.status_code, poll.status_code],
            "seconds": round(took, 2), "outcomes": {"succeeded": 1}})


# ------------------------------------------------------------------------------------------ API
def _poll_raw(url: str, key: str, job_id: str, errors: list[str], deadline: float) -> dict[str, Any] | None:
    """A poller that rides out an API restart: transport errors are retried until `deadline`."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as http:
        while time.monotonic() < deadline:
            try:
                resp = http.get(f"/v1/jobs/{job_id}")
            except httpx.TransportError as exc:
                errors.append(type(exc).__name__)
                time.sleep(0.2)
                continue
            assert resp.status_code == 200, resp.text
            job = resp.json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.2)
    return None


def test_api_restart_while_clients_poll(live: Stack, digits_mlp: dict[str, Any]) -> None:
    """Eight pollers on three jobs; the API is stopped and started twice under them. The jobs run on."""
    client = live.client("t3")
    sweep = {**MEDIUM, "num_steps": 1500}
    ids = [client.submit(digits_mlp, "builtin:digits", sweep=sweep)["id"] for _ in range(3)]
    transport_errors: list[str] = []
    deadline = time.monotonic() + RECOVERY_S
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_poll_raw, live.api.url, "key-t3", ids[i % 3], transport_errors, deadline)
                   for i in range(8)]
        for _ in range(2):
            time.sleep(2)
            live.api.restart()
        seen = [f.result() for f in futures]
    assert all(job is not None for job in seen), "a poller never saw its job end"
    final = wait_all(client, ids, RECOVERY_S)
    outcomes = check_all(client, final, start_lr=sweep["start_lr"])
    assert outcomes == {"succeeded": 3}, outcomes
    assert_nothing_unfinished(live.store, ["t3"])
    report({"fault": "API restart x2 while 8 pollers poll 3 jobs", "tries": 2, "jobs": 3,
            "poller_transport_errors": len(transport_errors), "outcomes": dict(outcomes)})


def test_python_client_wait_rides_out_an_api_restart(live: Stack, digits_mlp: dict[str, Any]) -> None:
    """`Client.wait` (what `lrrt submit --wait` and notebooks use) keeps polling across an API restart
    instead of raising 'Cannot reach the lrrt server' at the first refused connection."""
    client = live.client("t3")
    job_id = client.submit(digits_mlp, "builtin:digits", sweep={**MEDIUM, "num_steps": 1500})["id"]
    outcome: dict[str, Any] = {}

    def waiter() -> None:
        try:
            outcome["job"] = live.client("t3").wait(job_id, timeout=RECOVERY_S)
        except Exception as exc:  # noqa: BLE001 (recorded and asserted below)
            outcome["error"] = exc

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(1.5)
    live.api.stop()
    time.sleep(3)  # a restart that takes a few seconds, as a rolling deploy does
    live.api.start()
    thread.join(RECOVERY_S)
    # Whatever the client did, the job itself must end well.
    assert wait_all(client, [job_id], RECOVERY_S)[job_id]["status"] == "succeeded"
    assert "error" not in outcome, f"Client.wait gave up during the restart: {outcome.get('error')!r}"
    assert outcome["job"]["status"] == "succeeded"


# ------------------------------------------------------------------------------------------ cap
def test_tenant_cap_filled_by_concurrent_clients(live: Stack, digits_mlp: dict[str, Any]) -> None:
    """Sixteen threads race to submit 24 jobs for one tenant: exactly CAP are accepted, the rest get 429
    with Retry-After; other tenants are unaffected; cancelling frees the cap; nothing stays unfinished."""
    body = {"model": digits_mlp, "dataset": {"uri": "builtin:digits"}, "sweep": LONG}

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{live.api.url}/v1/jobs", json=body, headers={"Authorization": "Bearer key-t4"}, timeout=60)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(24)))
    codes = sorted(a.status_code for a in answers)
    accepted = [a.json()["id"] for a in answers if a.status_code == 202]
    assert codes == [202] * CAP + [429] * (24 - CAP), codes
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) > 0
    store = live.store
    assert store.unfinished_count("t4") == CAP

    other = live.client("t5")
    elsewhere = other.submit(digits_mlp, "builtin:digits", sweep=TINY)["id"]  # another tenant's cap is its own
    client = live.client("t4")
    for job_id in accepted:
        client.cancel(job_id)
    final = wait_all(client, accepted, RECOVERY_S)
    assert {j["status"] for j in final.values()} == {"cancelled"}
    check_all(client, final)
    again = client.submit(digits_mlp, "builtin:digits", sweep=TINY)["id"]  # the cap is free again
    final.update(wait_all(client, [again], RECOVERY_S))
    assert wait_all(other, [elsewhere], RECOVERY_S)[elsewhere]["status"] == "succeeded"
    assert final[again]["status"] == "succeeded"
    assert_nothing_unfinished(store, ["t4", "t5"])
    report({"fault": "tenant cap filled by 16 concurrent clients (24 submits)", "tries": 24,
            "accepted": len(accepted), "refused_429": codes.count(429), "cap": CAP, "jobs": len(final) + 1,
            "outcomes": {"cancelled": len(accepted), "succeeded": 2}})


def test_refused_submission_leaves_no_trace(live: Stack, digits_mlp: dict[str, Any]) -> None:
    """A 429 and a 422 create no job record and send nothing to the queue."""
    client = live.client("t6")
    ids = [client.submit(digits_mlp, "builtin:digits", sweep=LONG)["id"] for _ in range(CAP)]
    jobs_before = live.r.zcard(live.store.k.tenant_jobs("t6"))
    with pytest.raises(LrrtError) as refused:
        client.submit(digits_mlp, "builtin:digits", sweep=TINY)
    assert refused.value.status == 429
    with pytest.raises(LrrtError) as invalid:
        client.submit({"class_name": "Lambda"}, "builtin:digits")
    assert invalid.value.status == 422
    assert live.r.zcard(live.store.k.tenant_jobs("t6")) == jobs_before
    for job_id in ids:
        client.cancel(job_id)
    check_all(client, wait_all(client, ids, RECOVERY_S))
    assert_nothing_unfinished(live.store, ["t6"])


@pytest.mark.slow
@pytest.mark.xfail(reason="bug 8 (docs/reliability.md): kombu 5.7 can crash the worker on reconnect; the restart "
                   "in lrrt worker (880bacd) was proven on one real crash only, so this soak stays a non-strict "
                   "expected failure until more runs confirm it", strict=False)
def test_redis_restarted_repeatedly_under_running_jobs(live: Stack, digits_mlp: dict[str, Any]) -> None:
    """Three restarts a few seconds apart (SIGKILL, SIGTERM, SIGKILL) while six jobs run and queue."""
    client = live.client("t7")
    sweep = {**MEDIUM, "num_steps": 1500}
    ids = [client.submit(digits_mlp, "builtin:digits", sweep=sweep)["id"] for _ in range(6)]
    wait_until(lambda: running_with_steps(client, ids), RECOVERY_S, "a job mid-sweep", interval=0.3)
    states = []
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
        states.append(sorted(client.status(j)["status"] for j in ids))
        live.redis.restart(down_s=1, sig=sig)
        time.sleep(4)
    assert live.worker.alive(), f"the worker process exited during the Redis restarts:\n{live.worker.tail(12)}"
    final = wait_all(client, ids, timeout=RECOVERY_S * 2)
    outcomes = check_all(client, final, start_lr=sweep["start_lr"])
    assert outcomes == {"succeeded": len(ids)}, outcomes
    assert_nothing_unfinished(live.store, ["t7"])
    report({"fault": "Redis restarted 3x (KILL, TERM, KILL) under 6 jobs", "tries": 3, "jobs": len(ids),
            "states_at_restarts": states, "outcomes": dict(outcomes)})


def test_redis_error_in_the_chunk_hook_metrics_does_not_fail_the_job(settings: Settings, digits_mlp: dict[str, Any],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the 3-restart soak (bug 10): the step counter's Redis write in the chunk hook was the one call
    there not retried; its ConnectionError reached Keras's fit and the job failed as "The training
    configuration is invalid". The worker's store retries every command (`store_from_settings(ride_out_s=)`):
    a connection reset is injected once, in-process, under that retry, on a real engine run."""
    import redis as redis_lib

    from lrrt.store.jobs import LEASE_TTL_S, store_from_settings
    from worker import tasks

    real, calls = redis_lib.client.Pipeline._execute_pipeline, []

    def reset_once(pipe: Any, connection: Any, commands: Any, raise_on_error: bool) -> Any:
        if any(args[0] == "HINCRBY" and args[2] == "steps" for args, _ in commands):  # Stats.add_steps
            calls.append(1)
            if len(calls) == 1:
                raise redis_lib.ConnectionError("Error while reading from 127.0.0.1:6379 : (104, 'Connection reset by peer')")
        return real(pipe, connection, commands, raise_on_error)

    monkeypatch.setattr(redis_lib.client.Pipeline, "_execute_pipeline", reset_once)
    store = store_from_settings(settings, ride_out_s=LEASE_TTL_S)
    spec = {"model": digits_mlp, "dataset": {"uri": "builtin:digits"}, "optimizers": [{"name": "adam"}],
            "sweep": {**TINY, "num_steps": 60}}
    job_id = store.create(tenant="blip", spec=JobSpec.model_validate(spec), max_unfinished=5).job.id
    token = store.new_token()
    claim = store.claim(job_id, token)
    assert claim.outcome == "claimed" and claim.run is not None
    tasks.JobRun(store, settings, Claimed(job_id, claim.run, claim.attempts, token, "blip")).run()
    job = store.get(job_id)
    assert len(calls) > 1 and job.status == "succeeded", job.error
    assert len(store.result(job_id)["arms"][0]["losses"]) == 60
