"""Job routes against a real Redis: submit, poll, list, cancel, delete, results (no Celery worker)."""

from __future__ import annotations

import json
import time

import pytest
import redis
from fastapi.testclient import TestClient

from lrrt.settings import Settings
from lrrt.store.jobs import JobStore
from lrrt.store.outcomes import Claim, ClaimOutcome
from service.app import create_app
from tests.service.api.conftest import ALICE, BOB, FakeWorker, make_spec, queued_job_ids, result_for, submit


def test_submit_queues_job_and_message(client: TestClient, redis_client: redis.Redis, settings: Settings) -> None:
    response = client.post("/v1/jobs", json=make_spec(), headers=ALICE)
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["labels"] == {"team": "vision"}
    assert job["progress"] is None and job["error"] is None and job["finished_at"] is None
    assert job["links"] == {
        "self": f"/v1/jobs/{job['id']}", "result": f"/v1/jobs/{job['id']}/result",
        "plot": f"/v1/jobs/{job['id']}/plot.png", "events": f"/v1/jobs/{job['id']}/events",
        "cancel": f"/v1/jobs/{job['id']}/cancel",
    }
    assert job["id"] in queued_job_ids(redis_client, settings.queue)


def test_model_as_json_string_is_accepted(client: TestClient, store: JobStore) -> None:
    spec = make_spec()
    spec["model"] = json.dumps(spec["model"])
    response = client.post("/v1/jobs", json=spec, headers=ALICE)
    assert response.status_code == 202, response.text
    stored = store.get(response.json()["id"])
    assert stored is not None and stored.spec.model["class_name"] == "Sequential"


def test_poll_has_etag_retry_after_and_304(client: TestClient) -> None:
    job = submit(client)
    first = client.get(f"/v1/jobs/{job['id']}", headers=ALICE)
    assert first.status_code == 200
    assert first.headers["retry-after"] == "2"
    etag = first.headers["etag"]
    same = client.get(f"/v1/jobs/{job['id']}", headers={**ALICE, "If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    assert same.headers["etag"] == etag
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=ALICE)
    changed = client.get(f"/v1/jobs/{job['id']}", headers={**ALICE, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert "retry-after" not in changed.headers  # terminal: nothing more to wait for


def test_running_job_shows_progress(client: TestClient, worker: FakeWorker) -> None:
    job = submit(client)
    worker.start(job["id"])
    worker.chunk(job["id"], 0, "SGD", 0, 10)
    polled = client.get(f"/v1/jobs/{job['id']}", headers=ALICE)
    body = polled.json()
    assert body["status"] == "running" and body["started_at"] and body["attempts"] == 1
    assert body["progress"]["steps_done"] == 10 and body["progress"]["arms"][0]["label"] == "SGD"
    assert polled.headers["retry-after"] == "1"


def test_idempotency_replay_and_conflict(client: TestClient, redis_client: redis.Redis, settings: Settings) -> None:
    key = {"Idempotency-Key": "nightly-run-42", **ALICE}
    first = client.post("/v1/jobs", json=make_spec(), headers=key)
    again = client.post("/v1/jobs", json=make_spec(), headers=key)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert queued_job_ids(redis_client, settings.queue).count(first.json()["id"]) == 1
    other = client.post("/v1/jobs", json=make_spec(labels={"team": "audio"}), headers=key)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["job_id"] == first.json()["id"]
    # The key is per tenant: bob's identical key is a new job.
    bobs = client.post("/v1/jobs", json=make_spec(), headers={**BOB, "Idempotency-Key": "nightly-run-42"})
    assert bobs.status_code == 202 and bobs.json()["id"] != first.json()["id"]


def test_list_is_newest_first_paginated_and_filtered(client: TestClient, settings: Settings) -> None:
    headers = {"Authorization": "Bearer key-carol"}
    carol = Settings(**{**settings.model_dump(), "api_keys": "carol:key-carol"})
    with TestClient(create_app(carol, reaper_interval_s=None)) as own:
        ids = [submit(own, headers)["id"] for _ in range(5)]
        own.post(f"/v1/jobs/{ids[0]}/cancel", headers=headers)
        page1 = own.get("/v1/jobs?page_size=2", headers=headers).json()
        assert [j["id"] for j in page1["items"]] == ids[::-1][:2]
        page2 = own.get(f"/v1/jobs?page_size=2&page_token={page1['next_page_token']}", headers=headers).json()
        page3 = own.get(f"/v1/jobs?page_size=2&page_token={page2['next_page_token']}", headers=headers).json()
        assert [j["id"] for j in page2["items"] + page3["items"]] == ids[::-1][2:]
        assert page3["next_page_token"] is None
        cancelled = own.get("/v1/jobs?status=cancelled", headers=headers).json()
        assert [j["id"] for j in cancelled["items"]] == [ids[0]]
        bad = own.get("/v1/jobs?status=done&page_size=0", headers=headers)
        assert bad.status_code == 422
        assert {e["pointer"] for e in bad.json()["errors"]} == {"/status", "/page_size"}
        assert own.get("/v1/jobs?page_token=abc", headers=headers).status_code == 422


def test_cancel_queued_job_never_starts(client: TestClient, store: JobStore) -> None:
    job = submit(client)
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=ALICE)
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    # The message is still in the queue; when a worker picks it up, the claim is refused.
    assert store.claim(job["id"], store.new_token()) == Claim(ClaimOutcome.SKIP, status="cancelled")
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=ALICE)
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]


def test_cancel_running_job_flags_it(client: TestClient, worker: FakeWorker, store: JobStore) -> None:
    job = submit(client)
    worker.start(job["id"])
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=ALICE)
    assert response.status_code == 202
    assert response.json()["status"] == "running" and response.json()["cancel_requested"] is True
    assert store.cancel_requested(job["id"])


def test_delete_rules(client: TestClient, worker: FakeWorker, store: JobStore) -> None:
    job = submit(client)
    blocked = client.delete(f"/v1/jobs/{job['id']}", headers=ALICE)
    assert blocked.status_code == 409 and "cancel it first" in blocked.json()["detail"]
    worker.start(job["id"])
    assert client.delete(f"/v1/jobs/{job['id']}", headers=ALICE).status_code == 409
    worker.finish(job["id"], "succeeded", result=result_for(["SGD", "adam"]))
    assert client.delete(f"/v1/jobs/{job['id']}", headers=BOB).status_code == 404
    assert client.delete(f"/v1/jobs/{job['id']}", headers=ALICE).status_code == 204
    assert store.get(job["id"]) is None and store.result(job["id"]) is None
    assert client.get(f"/v1/jobs/{job['id']}", headers=ALICE).status_code == 404


def test_result_states(client: TestClient, worker: FakeWorker) -> None:
    job = submit(client)
    queued = client.get(f"/v1/jobs/{job['id']}/result", headers=ALICE)
    assert queued.status_code == 409 and "queued" in queued.json()["detail"]
    worker.start(job["id"])
    assert client.get(f"/v1/jobs/{job['id']}/result", headers=ALICE).status_code == 409
    stored = result_for(["SGD", "adam"])
    worker.finish(job["id"], "succeeded", result=stored)
    done = client.get(f"/v1/jobs/{job['id']}/result", headers=ALICE)
    assert done.status_code == 200
    body = done.json()
    assert body == {"id": job["id"], "status": "succeeded", **stored}  # the typed model adds and drops nothing
    assert [arm["label"] for arm in body["arms"]] == ["SGD", "adam"]
    assert body["recommendation"]["learning_rate"] == 1e-3


def test_running_job_partial_result_on_request(client: TestClient, worker: FakeWorker) -> None:
    job = submit(client)
    worker.start(job["id"])
    assert client.get(f"/v1/jobs/{job['id']}/result?partial=true", headers=ALICE).status_code == 409  # no step yet
    worker.chunk(job["id"], 0, "SGD", 0, 10)
    worker.chunk(job["id"], 0, "SGD", 10, 4)
    assert client.get(f"/v1/jobs/{job['id']}/result", headers=ALICE).status_code == 409
    partial = client.get(f"/v1/jobs/{job['id']}/result?partial=true", headers=ALICE)
    assert partial.status_code == 200 and partial.json()["status"] == "running"
    lrs = partial.json()["arms"][0]["lrs"]
    assert len(lrs) == 14 and lrs == sorted(lrs)


def test_job_resource_carries_spec_without_model(client: TestClient) -> None:
    job = submit(client)
    spec = client.get(f"/v1/jobs/{job['id']}", headers=ALICE).json()["spec"]
    assert "model" not in spec
    assert spec["dataset"]["uri"] and spec["sweep"]["start_lr"] > 0 and spec["optimizers"]


def test_cancelled_job_returns_partial_curves(client: TestClient, worker: FakeWorker) -> None:
    job = submit(client)
    worker.start(job["id"])
    worker.chunk(job["id"], 0, "SGD", 0, 10)
    worker.chunk(job["id"], 1, "adam", 0, 5)
    worker.finish(job["id"], "cancelled")  # no stored result: the API stitches the chunks
    partial = client.get(f"/v1/jobs/{job['id']}/result", headers=ALICE)
    assert partial.status_code == 200
    arms = partial.json()["arms"]
    assert partial.json()["status"] == "cancelled"
    assert [len(arm["lrs"]) for arm in arms] == [10, 5]


def test_failed_before_any_step_is_409(client: TestClient, worker: FakeWorker) -> None:
    job = submit(client)
    worker.start(job["id"])
    error = {"type": "urn:lrrt:problem:dataset-error", "title": "The dataset could not be used", "status": 422,
             "detail": "x has 64 features but the model expects 784"}
    worker.finish(job["id"], "failed", error=error)
    polled = client.get(f"/v1/jobs/{job['id']}", headers=ALICE).json()
    assert polled["status"] == "failed" and polled["error"] == error
    response = client.get(f"/v1/jobs/{job['id']}/result", headers=ALICE)
    assert response.status_code == 409 and "before any step ran" in response.json()["detail"]


def test_at_capacity_is_429_with_retry_after(settings: Settings) -> None:
    capped = Settings(**{**settings.model_dump(), "api_keys": "dave:key-dave", "max_unfinished_jobs": 2})
    headers = {"Authorization": "Bearer key-dave"}
    with TestClient(create_app(capped, reaper_interval_s=None)) as own:
        first = submit(own, headers)
        submit(own, headers)
        response = own.post("/v1/jobs", json=make_spec(), headers=headers)
        assert response.status_code == 429
        assert response.headers["retry-after"].isdigit()
        assert response.headers["content-type"] == "application/problem+json"
        own.post(f"/v1/jobs/{first['id']}/cancel", headers=headers)
        assert own.post("/v1/jobs", json=make_spec(), headers=headers).status_code == 202


def test_enqueue_failure_fails_job_and_answers_503(client: TestClient, store: JobStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def broker_down(*_args: object) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr("service.api.routes.jobs.enqueue", broker_down)
    response = client.post("/v1/jobs", json=make_spec(), headers=ALICE)
    assert response.status_code == 503
    problem = response.json()
    assert problem["type"].endswith("queue-unavailable")
    job = store.get(problem["job_id"])
    assert job is not None and job.status == "failed" and job.error is not None and "could not be reached" in job.error["detail"]


def test_lifespan_reaper_requeues_orphaned_job(settings: Settings, redis_client: redis.Redis,
                                               worker: FakeWorker, store: JobStore) -> None:
    """A running job whose worker died (lease gone) is requeued and re-sent by the API's reaper thread."""
    with TestClient(create_app(settings, reaper_interval_s=0.2)) as own:
        job = submit(own)
        worker.start(job["id"])
        redis_client.delete(store.k.lease(job["id"], 0), store.k.reaper_lock())
        redis_client.zadd(store.k.running(), {job["id"]: time.time() - 3600})
        deadline = time.monotonic() + 10
        while own.get(f"/v1/jobs/{job['id']}", headers=ALICE).json()["status"] != "queued":
            assert time.monotonic() < deadline, "the reaper never requeued the orphan"
            time.sleep(0.1)
    assert queued_job_ids(redis_client, settings.queue).count(job["id"]) == 2  # first send + re-send
