"""`sweep.confirm` at submission: the switch's forms, its caps and the held-out rows it needs, each
refused with a 422 that says what to change before any job exists."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lrrt.spec import JobSpec
from tests.service.api.conftest import ALICE, make_spec
from tests.service.api.test_dataset_fit_and_isolation import upload

SWEEP = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 50, "batch_size": 32}


@pytest.mark.parametrize(("sent", "stored"), [
    (False, None), (True, {"candidates": 5, "steps": None}), ({"candidates": 3}, {"candidates": 3, "steps": None}),
    ({"steps": 40}, {"candidates": 5, "steps": 40}),
])
def test_the_switch_and_its_object_are_stored_with_the_defaults_filled_in(client: TestClient, sent: object,
                                                                            stored: object) -> None:
    response = client.post("/v1/jobs", json=make_spec(sweep={**SWEEP, "confirm": sent}), headers=ALICE)
    assert response.status_code == 202, response.text
    assert response.json()["spec"]["sweep"]["confirm"] == stored


@pytest.mark.parametrize(("confirm", "pointer", "says"), [
    ({"candidates": 9}, ["sweep", "confirm", "candidates"], "less than or equal to 8"),
    ({"candidates": 0}, ["sweep", "confirm", "candidates"], "greater than or equal to 1"),
    ({"steps": 0}, ["sweep", "confirm", "steps"], "greater than or equal to 1"),
    ({"candidate": 3}, ["sweep", "confirm", "candidate"], "Extra inputs"),
    ("yes", ["sweep", "confirm"], "valid dictionary"),
])
def test_bad_confirm_settings_are_422_naming_the_field(client: TestClient, confirm: object, pointer: list[str],
                                                       says: str) -> None:
    response = client.post("/v1/jobs", json=make_spec(sweep={**SWEEP, "confirm": confirm}), headers=ALICE)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["pointer"] for e in errors] == ["/" + "/".join(pointer)], errors
    assert says in errors[0]["message"]


def test_confirm_steps_over_the_step_cap_is_a_cap_error(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=make_spec(sweep={**SWEEP, "confirm": {"steps": 10**6}}), headers=ALICE)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("cap-exceeded")
    assert [e["pointer"] for e in problem["errors"]] == ["/sweep/confirm/steps"]


def test_confirm_without_held_out_rows_is_refused(client: TestClient) -> None:
    spec = make_spec(dataset={"uri": "builtin:digits", "validation_split": 0}, sweep={**SWEEP, "confirm": True})
    response = client.post("/v1/jobs", json=spec, headers=ALICE)
    assert response.status_code == 422
    assert "set dataset.validation_split > 0" in response.text


def test_an_upload_without_x_val_needs_a_validation_split(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    meta = upload(client, x=rng.random((40, 64), dtype=np.float32), y=rng.integers(0, 10, 40))
    spec = make_spec(dataset={"uri": meta["uri"], "validation_split": 0}, sweep={**SWEEP, "confirm": True})
    response = client.post("/v1/jobs", json=spec, headers=ALICE)
    assert response.status_code == 422
    assert "has no x_val/y_val" in response.json()["detail"]
    with_val = upload(client, x=rng.random((40, 64), dtype=np.float32), y=rng.integers(0, 10, 40),
                      x_val=rng.random((10, 64), dtype=np.float32), y_val=rng.integers(0, 10, 10))
    ok = make_spec(dataset={"uri": with_val["uri"], "validation_split": 0}, sweep={**SWEEP, "confirm": True})
    assert client.post("/v1/jobs", json=ok, headers=ALICE).status_code == 202


def test_the_spec_counts_confirm_steps_only_when_on() -> None:
    spec = JobSpec.model_validate(make_spec(sweep={**SWEEP, "confirm": {"candidates": 2}}))
    assert spec.sweep.confirm_steps(1000) == 50
    # the default 5 candidates share 3 sweeps' worth: 30 steps each of a 50-step sweep
    assert JobSpec.model_validate(make_spec(sweep={**SWEEP, "confirm": True})).sweep.confirm_steps(1000) == 30
    assert JobSpec.model_validate(make_spec(sweep=SWEEP)).sweep.confirm_steps(1000) == 0
