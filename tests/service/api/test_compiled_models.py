"""A compiled model's JSON at the API: accepted, its optimizer and loss fill what the job leaves out (so the
stored spec, which the worker runs, is explicit), the job's own win when it names them, and the result's
`notes` say which was used. The `compile_config`s are what Keras 3.15 writes (`model.compile(...)` then
`to_json()`), verbatim; tests/lrrt/vetting/test_compiled.py holds the reader to Keras itself.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lrrt.store.jobs import JobStore
from tests.service.api.conftest import ALICE, MLP, FakeWorker, make_spec

#: keras.optimizers.AdamW(weight_decay=0.01, clipnorm=1.0, gradient_accumulation_steps=2) with
#: keras.losses.SparseCategoricalCrossentropy() and metrics=["accuracy"].
COMPILED = {
    "optimizer": {"module": "keras.optimizers", "class_name": "AdamW", "registered_name": None, "config": {
        "name": "adam_w", "learning_rate": 0.0010000000474974513, "weight_decay": 0.01, "clipnorm": 1.0,
        "global_clipnorm": None, "clipvalue": None, "use_ema": False, "ema_momentum": 0.99,
        "ema_overwrite_frequency": None, "loss_scale_factor": None, "gradient_accumulation_steps": 2, "beta_1": 0.9,
        "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}},
    "loss": {"module": "keras.losses", "class_name": "SparseCategoricalCrossentropy", "registered_name": None, "config": {
        "name": "sparse_categorical_crossentropy", "reduction": "sum_over_batch_size", "from_logits": False,
        "ignore_class": None}},
    "loss_weights": None, "metrics": ["accuracy"], "weighted_metrics": None, "run_eagerly": False,
    "steps_per_execution": 1, "jit_compile": False,
}
ADAMW_PARAMS = {"weight_decay": 0.01, "clipnorm": 1.0, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}


def compiled_mlp(**compile_config: Any) -> dict[str, Any]:
    return {**copy.deepcopy(MLP), "compile_config": {**copy.deepcopy(COMPILED), **compile_config}}


def submit_body(model: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = make_spec(model=model, **fields)
    for name in ("optimizers", "loss"):
        if name not in fields:
            del body[name]
    return body


@pytest.fixture(autouse=True)
def client(client: TestClient) -> Iterator[TestClient]:
    """The session's client; the jobs a test here created are cancelled afterwards, so that they do not
    count towards alice's unfinished-jobs cap in the tests that run after these."""
    before = {job["id"] for job in client.get("/v1/jobs?limit=100", headers=ALICE).json()["items"]}
    yield client
    for job in client.get("/v1/jobs?limit=100", headers=ALICE).json()["items"]:
        if job["id"] not in before and job["status"] in ("queued", "running"):
            client.post(f"/v1/jobs/{job['id']}/cancel", headers=ALICE)


def notes_of(client: TestClient, worker: FakeWorker, job_id: str, label: str) -> dict[str, str]:
    worker.start(job_id)
    worker.chunk(job_id, 0, label, 0, 5)
    partial = client.get(f"/v1/jobs/{job_id}/result?partial=true", headers=ALICE)
    assert partial.status_code == 200, partial.text
    worker.finish(job_id, "cancelled")  # no longer unfinished: alice's cap is the session's
    notes: dict[str, str] = {}
    for note in partial.json()["notes"]:  # one code may have several notes (the settings ignored)
        notes[note["code"]] = " | ".join(filter(None, [notes.get(note["code"]), note["message"]]))
    return notes


def test_a_compiled_models_optimizer_and_loss_fill_what_the_job_leaves_out(client: TestClient, store: JobStore,
                                                                           worker: FakeWorker) -> None:
    response = client.post("/v1/jobs", json=submit_body(compiled_mlp()), headers=ALICE)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    shown = client.get(f"/v1/jobs/{job_id}", headers=ALICE).json()["spec"]
    assert shown["optimizers"] == [{"name": "adamw", "label": None, "params": ADAMW_PARAMS}]
    assert shown["loss"] == "sparse_categorical_crossentropy" and shown["loss_weights"] is None
    stored = store.get(job_id)
    assert stored is not None and [a.display_label for a in stored.spec.optimizers] == ["adamw"]  # what the worker runs
    notes = notes_of(client, worker, job_id, "adamw")
    assert notes["compiled_optimizer_used"].startswith("arm 'adamw' is the model's compiled optimizer")
    assert "sparse_categorical_crossentropy" in notes["compiled_loss_used"]
    assert "learning_rate 0.001" in notes["compiled_learning_rate"]
    assert "gradient_accumulation_steps=2" in notes["compiled_setting_ignored"]


def test_the_jobs_own_optimizers_and_loss_win_and_the_result_says_so(client: TestClient, worker: FakeWorker) -> None:
    body = submit_body(compiled_mlp(), optimizers=[{"name": "sgd", "label": "SGD"}], loss="categorical_crossentropy")
    response = client.post("/v1/jobs", json=body, headers=ALICE)
    assert response.status_code == 202, response.text
    shown = client.get(f"/v1/jobs/{response.json()['id']}", headers=ALICE).json()["spec"]
    assert [a["label"] for a in shown["optimizers"]] == ["SGD"] and shown["loss"] == "categorical_crossentropy"
    notes = notes_of(client, worker, response.json()["id"], "SGD")
    assert "not the model's compiled adamw" in notes["compiled_optimizer_replaced"]
    assert "the job's loss (categorical_crossentropy) was used" in notes["compiled_loss_replaced"]


def test_a_from_logits_loss_is_accepted_and_the_stored_spec_carries_its_settings(client: TestClient, store: JobStore,
                                                                                  worker: FakeWorker) -> None:
    logits = copy.deepcopy(COMPILED["loss"])
    logits["config"]["from_logits"] = True
    response = client.post("/v1/jobs", json=submit_body(compiled_mlp(loss=logits)), headers=ALICE)
    assert response.status_code == 202, response.text
    shown = client.get(f"/v1/jobs/{response.json()['id']}", headers=ALICE).json()["spec"]
    assert shown["loss"] == "sparse_categorical_crossentropy" and shown["loss_config"] == {"from_logits": True}
    stored = store.get(response.json()["id"])
    assert stored is not None and stored.spec.loss_config == {"from_logits": True}  # what the worker runs
    notes = notes_of(client, worker, response.json()["id"], "adamw")
    assert "sparse_categorical_crossentropy with {'from_logits': True}" in notes["compiled_loss_used"]


def test_a_loss_setting_a_job_cannot_express_is_a_422_only_when_the_job_leaves_the_loss_to_the_model(
        client: TestClient) -> None:
    summed = copy.deepcopy(COMPILED["loss"])
    summed["config"]["reduction"] = "sum"
    response = client.post("/v1/jobs", json=submit_body(compiled_mlp(loss=summed)), headers=ALICE)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert [e["pointer"] for e in problem["errors"]] == ["/loss"]  # the field to name instead
    assert "reduction='sum'" in problem["detail"] and "name the loss in the job" in problem["detail"]
    named = client.post("/v1/jobs", json=submit_body(compiled_mlp(loss=summed), loss="mse"), headers=ALICE)
    assert named.status_code == 202, named.text


def test_a_jobs_own_loss_config_is_checked_against_its_loss(client: TestClient) -> None:
    body = submit_body(copy.deepcopy(MLP), loss="categorical_crossentropy", loss_config={"label_smoothing": 0.1})
    accepted = client.post("/v1/jobs", json=body, headers=ALICE)
    assert accepted.status_code == 202, accepted.text
    refused = client.post("/v1/jobs", json={**body, "loss": "sparse_categorical_crossentropy"}, headers=ALICE)
    assert refused.status_code == 422, refused.text
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/loss_config"]
    assert "takes only from_logits, ignore_class, not 'label_smoothing'" in refused.json()["detail"]


def test_loss_weights_must_give_one_weight_per_output(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=submit_body(compiled_mlp(loss="mse", loss_weights=[1.0, 2.0])), headers=ALICE)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:lrrt:problem:config-invalid" and "one weight per model output" in problem["detail"]
    assert [e["pointer"] for e in problem["errors"]] == ["/loss_weights"]
    weighted = client.post("/v1/jobs", json=submit_body(compiled_mlp(loss="mse", loss_weights=[0.5])), headers=ALICE)
    assert weighted.status_code == 202, weighted.text
    spec = client.get(f"/v1/jobs/{weighted.json()['id']}", headers=ALICE).json()["spec"]
    assert spec["loss"] == "mse" and spec["loss_weights"] == [0.5]


def test_an_uncompiled_model_without_optimizers_or_loss_keeps_the_defaults(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=submit_body(copy.deepcopy(MLP)), headers=ALICE)
    assert response.status_code == 202, response.text
    spec = client.get(f"/v1/jobs/{response.json()['id']}", headers=ALICE).json()["spec"]
    assert spec["optimizers"] == [{"name": "adam", "label": None, "params": {}}]
    assert spec["loss"] == "sparse_categorical_crossentropy"
