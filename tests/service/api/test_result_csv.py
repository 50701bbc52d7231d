"""`GET /v1/jobs/{id}/result.csv`: a row per arm and step with the contract's columns; 409 before any
step; 404 for unknown ids and other tenants' jobs, as `/result`."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from service.api.routes.jobs import CSV_COLUMNS
from tests.service.api.conftest import ALICE, BOB, FakeWorker, result_for, submit


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_before_any_step_is_a_409_problem_then_the_recorded_rows(client: TestClient, worker: FakeWorker) -> None:
    job = submit(client, optimizers=[{"name": "sgd", "label": "SGD"}, {"name": "adam"}])
    early = client.get(f"/v1/jobs/{job['id']}/result.csv", headers=ALICE)
    assert early.status_code == 409
    assert early.headers["content-type"].startswith("application/problem+json")
    assert "no curves" in early.json()["detail"]

    worker.start(job["id"])
    worker.chunk(job["id"], 0, "SGD", 0, 10)
    worker.chunk(job["id"], 1, "adam", 0, 4)
    running = client.get(f"/v1/jobs/{job['id']}/result.csv", headers=ALICE)
    assert running.status_code == 200 and running.headers["content-type"].startswith("text/csv")
    assert running.headers["cache-control"] == "no-store"
    table = rows(running.text)
    assert tuple(table[0].keys()) == CSV_COLUMNS
    assert [(r["label"], r["step"]) for r in table] == [("SGD", str(i)) for i in range(10)] + [
        ("adam", str(i)) for i in range(4)]
    assert float(table[3]["lr"]) == 1e-4 * 1.2 ** 3 and table[0]["val_loss"] == ""


def test_csv_of_a_finished_job_has_every_value(client: TestClient, worker: FakeWorker) -> None:
    job = submit(client, optimizers=[{"name": "adam", "label": "A"}, {"name": "adam", "label": "B"}])
    worker.start(job["id"])
    result = result_for(["A", "B"])
    worker.finish(job["id"], "succeeded", result=result)
    answer = client.get(f"/v1/jobs/{job['id']}/result.csv", headers=ALICE)
    assert answer.status_code == 200 and "cache-control" not in answer.headers
    table = rows(answer.text)
    assert len(table) == 2 * len(result["arms"][0]["lrs"])
    first = result["arms"][0]
    assert [float(r["loss"]) for r in table[:5]] == first["losses"]
    assert [float(r["smoothed_loss"]) for r in table[:5]] == first["smoothed_losses"]
    assert [float(r["loss_delta"]) for r in table[:5]] == first["loss_deltas"]


def test_csv_unknown_and_other_tenants_job_are_404(client: TestClient) -> None:
    job = submit(client)
    for job_id, headers in ((job["id"], BOB), ("0" * 32, ALICE), ("not-an-id", ALICE)):
        answer = client.get(f"/v1/jobs/{job_id}/result.csv", headers=headers)
        assert answer.status_code == 404 and answer.json()["type"].endswith("job-not-found"), answer.text
