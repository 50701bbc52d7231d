"""The docker-compose deployment built and run for real, driven from the host as a platform would.

Redis (AOF on), the API and two CPU workers come up from images built here (no image registry: the
local base of deploy/base-image.sh, docker-compose.cpu.yml and deploy/docker-compose.local.yml); jobs
go in through the published loopback port with an API key; then the faults, each with nothing lost: a
worker killed mid-job, Redis restarted under queued and running jobs, the API restarted under a polling
client, and a scale-out to four workers that the fan-out spreads a job over.

Marked `compose` and run only when asked: `LRRT_COMPOSE_E2E=1` (tests/deploy/conftest.py deselects it
otherwise, saying so), which `.ci/run` sets whenever the deployment's files changed since the last
passing run. Needs root (or a running Docker engine), docker.io, docker-compose and debootstrap; takes
about 6 minutes on 2 cores with the images cached, 17 cold. Timings are printed (`-s`), never asserted.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.deploy.compose_stack import ROOT, Stack, running_stack

pytestmark = [pytest.mark.compose, pytest.mark.timeout(3600)]

MODEL = json.loads((ROOT / "examples" / "digits_mlp.json").read_text())
JOB_TIMEOUT_S = 600


def body(optimizers: list[str], *, steps: int, dataset: str = "builtin:digits", **sweep: Any) -> dict[str, Any]:
    """A job on the digits MLP; `divergence_threshold: None` makes every run take all its steps."""
    return {
        "model": MODEL,
        "dataset": {"uri": dataset, "normalize": dataset == "builtin:digits"},
        "loss": "sparse_categorical_crossentropy",
        "optimizers": [{"name": name} for name in optimizers],
        "sweep": {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": steps, "batch_size": 32,
                  "divergence_threshold": None, **sweep},
    }


def succeeded(stack: Stack, job: dict[str, Any]) -> dict[str, Any]:
    """The finished job's result, after checking it succeeded with every run's curve complete."""
    assert job["status"] == "succeeded", f"job {job['id']} ended {job['status']}: {job.get('error')}\n{stack.logs()}"
    resp = stack.http.get(f"/v1/jobs/{job['id']}/result")
    assert resp.status_code == 200, resp.text
    result = resp.json()
    steps = job_steps(stack, job["id"])
    for arm in result["arms"]:
        assert len(arm["losses"]) == steps, f"{arm['label']}: {len(arm['losses'])} of {steps} steps"
    return result


def job_steps(stack: Stack, job_id: str) -> int:
    progress = stack.job(job_id)["progress"]
    return int(progress["steps_total"]) // max(1, len(progress["arms"]))


def runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    return result["engine"]["runs"]


def wait_running(stack: Stack, job_id: str, arms: int, timeout: float = 300) -> dict[str, Any]:
    """Until `arms` arms of the job have taken steps (so their runs are mid-job on workers)."""
    def probe() -> dict[str, Any] | None:
        job = stack.job(job_id)
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            raise AssertionError(f"job {job_id} ended ({job['status']}) before {arms} arms were running")
        stepping = [a for a in (job["progress"] or {}).get("arms", []) if a.get("steps_done", 0) > 0 and a["state"] == "running"]
        return job if len(stepping) >= arms else None

    return stack.wait(f"job {job_id} with {arms} arms stepping", probe, timeout, interval=0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("compose"), workers=2) as running:
        yield running


def test_a_job_through_the_published_port(stack: Stack) -> None:
    ready = stack.ready()
    assert ready is not None and len(ready["workers"]) == 2, ready
    assert stack.http.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    started = time.monotonic()
    job = stack.submit(body(["sgd", "adam"], steps=200))
    result = succeeded(stack, stack.poll(job["id"], JOB_TIMEOUT_S))
    stack.timings["first job (2 arms x 200 steps)"] = time.monotonic() - started
    assert {a["label"] for a in result["arms"]} == {"sgd", "adam"}
    assert result["recommendation"]["learning_rate"] > 0
    assert result["engine"]["backend"] == "tensorflow" and result["engine"]["device"].startswith("CPU")
    png = stack.http.get(f"/v1/jobs/{job['id']}/plot.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG\r\n\x1a\n"), png.status_code
    print(f"compose-e2e: first job ran on {sorted({r['worker'] for r in runs(result)})}")


def test_an_uploaded_dataset_is_read_by_the_workers(stack: Stack) -> None:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.random((600, 64), dtype=np.float32), y=rng.integers(0, 10, 600))
    resp = stack.http.post("/v1/datasets", files={"file": ("e2e.npz", buffer.getvalue(), "application/octet-stream")})
    assert resp.status_code == 201, resp.text
    dataset = resp.json()
    # The API wrote the file on the shared volume as uid 10001, and a worker container sees the same file.
    found = stack.exec("api", "find", "/data", "-name", f"*{dataset['id']}*", "-printf", "%U %p\n").split()
    assert len(found) == 2 and found[0] == "10001", found
    assert stack.exec("worker-cpu", "stat", "-c", "%u %s", found[1], index=2).split()[0] == "10001"
    job = stack.submit(body(["adam"], steps=100, dataset=dataset["uri"]))
    result = succeeded(stack, stack.poll(job["id"], JOB_TIMEOUT_S))
    assert result["arms"][0]["optimizer"]["name"] == "adam"


def test_a_worker_killed_mid_job_leaves_the_job_to_the_other(stack: Stack) -> None:
    containers = stack.worker_containers()
    assert len(containers) == 2, containers
    job = stack.submit(body(["sgd", "adam"], steps=4000))
    wait_running(stack, job["id"], arms=2)  # one run on each worker
    victim, survivor = containers
    killed_at = time.monotonic()
    stack.docker("kill", victim)
    result = succeeded(stack, stack.poll(job["id"], JOB_TIMEOUT_S))
    stack.timings["kill: job done after the kill"] = time.monotonic() - killed_at
    survivor_node = f"cpu@{survivor[:12]}"
    print(f"compose-e2e: killed {victim[:12]}; runs " + json.dumps(runs(result)))
    assert {r["worker"] for r in runs(result)} == {survivor_node}, "every run must have finished on the survivor"
    assert max(r["attempts"] for r in runs(result)) == 2, "the killed run is retried once"
    # Back to two workers for the next faults (`up` starts the killed container again).
    stack.compose("up", "-d", "--no-build", "--scale", "worker-cpu=2", "worker-cpu", timeout=300)
    stack.wait_ready(2)


def test_redis_restart_under_queued_and_running_jobs_loses_nothing(stack: Stack) -> None:
    # 6 runs of ~4000 steps for 2 workers: the first job's runs are taken, the last job's wait.
    jobs = [stack.submit(body(["sgd", "adam"], steps=4000)) for _ in range(3)]
    wait_running(stack, jobs[0]["id"], arms=1)
    states = {j["id"]: stack.job(j["id"])["status"] for j in jobs}
    assert "queued" in states.values() and "running" in states.values(), states
    run_id = redis_run_id(stack)
    first, errors, span = poll_through(stack, jobs[0]["id"], "redis")
    finished = [first] + [stack.poll(j["id"], JOB_TIMEOUT_S) for j in jobs[1:]]
    print(f"compose-e2e: before the Redis restart {states}; a client polling saw {dict(errors)} over {span:.1f} s")
    for job in finished:
        result = succeeded(stack, job)
        print(f"compose-e2e: {job['id']} succeeded, runs " + json.dumps(runs(result)))
    assert redis_run_id(stack) != run_id, "Redis was not restarted"
    assert stack.redis_cli("CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
    for status in ("queued", "running"):
        left = stack.http.get("/v1/jobs", params={"status": status}).json()["items"]
        assert left == [], f"{status} jobs left after the restart: {[j['id'] for j in left]}"
    stack.wait_ready(2)


def poll_through(stack: Stack, job_id: str, service: str) -> tuple[dict[str, Any], Counter[str], float]:
    """`docker-compose restart SERVICE` while a client polls the job (as a platform would) until it is
    terminal: the finished job, the errors the client saw, and the seconds from its first to its last."""
    outage: list[str] = []
    done: dict[str, Any] = {}

    def client() -> None:
        done["job"] = stack.poll(job_id, JOB_TIMEOUT_S, outage=outage)

    poller = threading.Thread(target=client)
    poller.start()
    started = time.monotonic()
    stack.compose("restart", service, timeout=120)
    stack.timings[f"{service} restart (docker-compose restart)"] = time.monotonic() - started
    poller.join(JOB_TIMEOUT_S + 60)
    assert "job" in done, f"the polling client did not finish (errors: {outage[-5:]})"
    span = float(outage[-1].split()[0]) - float(outage[0].split()[0]) if outage else 0.0
    stack.timings[f"{service} outage seen by a client"] = span
    return done["job"], Counter(entry.split(" ", 1)[1] for entry in outage), span


def redis_run_id(stack: Stack) -> str:
    """Redis's run_id: a new one for each server process."""
    (line,) = [ln for ln in stack.redis_cli("INFO", "server").splitlines() if ln.startswith("run_id:")]
    return line.split(":", 1)[1].strip()


def test_an_api_restart_is_a_short_outage_and_nothing_else(stack: Stack) -> None:
    job = stack.submit(body(["sgd", "adam"], steps=4000))
    wait_running(stack, job["id"], arms=1)
    finished, errors, span = poll_through(stack, job["id"], "api")
    succeeded(stack, finished)
    print(f"compose-e2e: the client polling through the API restart saw {dict(errors)} over {span:.1f} s")
    assert set(errors) <= {"ConnectError", "RemoteProtocolError", "ReadError", "HTTP 502", "HTTP 503"}, errors
    assert stack.job(job["id"])["status"] == "succeeded"


def test_scaled_to_four_workers_a_job_spreads_over_them(stack: Stack) -> None:
    started = time.monotonic()
    stack.compose("up", "-d", "--no-build", "--scale", "worker-cpu=4", "worker-cpu", timeout=600)
    stack.wait_ready(4)
    stack.timings["scale 2 -> 4 workers to /readyz"] = time.monotonic() - started
    nodes = {f"cpu@{cid[:12]}" for cid in stack.worker_containers()}
    assert len(nodes) == 4
    started = time.monotonic()
    job = stack.submit(body(["sgd", "adam", "rmsprop", "adagrad"], steps=1500))
    result = succeeded(stack, stack.poll(job["id"], JOB_TIMEOUT_S))
    stack.timings["4-arm job on 4 workers"] = time.monotonic() - started
    spread = Counter(r["worker"] for r in runs(result))
    print(f"compose-e2e: 4 runs over {len(spread)} workers: {dict(spread)}; engine seconds {result['engine']['seconds']}")
    assert set(spread) <= nodes
    assert len(spread) >= 3, f"the fan-out left workers idle: {dict(spread)}"
