"""At submission, with the worker's own rules: no tenant reaches another's upload through any spelling
of a `file:` path, an upload's array names and shapes must fit the model's inputs and outputs, and a
loss must be one Keras knows (or one per output name)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from lrrt.problems import DatasetInvalid
from lrrt.settings import Settings
from lrrt.store.keys import Keys
from tests.service.api.conftest import ALICE, BOB, make_spec

TWO_INPUTS = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "tf_keras_2_21_two_inputs.json").read_text())


def upload(client: TestClient, headers: dict[str, str] = ALICE, **arrays: np.ndarray) -> dict[str, Any]:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    response = client.post("/v1/datasets", files={"file": ("d.npz", buffer.getvalue())}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def refused(client: TestClient, spec: dict[str, Any], headers: dict[str, str], slug: str, says: str) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == f"urn:lrrt:problem:{slug}", problem
    assert says in problem["detail"], problem["detail"]
    return problem


def test_no_file_path_reaches_an_upload(client: TestClient, settings: Settings, redis_client: redis.Redis) -> None:
    rng = np.random.default_rng(0)
    alices = upload(client, x=rng.random((40, 64), dtype=np.float32), y=rng.integers(0, 10, 40))["id"]
    root = settings.data_root
    (root / "link.npz").symlink_to(root / "datasets" / f"{alices}.npz")
    (root / "alias").symlink_to(root / "datasets", target_is_directory=True)
    jobs = Keys(settings.key_prefix).tenant_jobs("bob")
    before = redis_client.zcard(jobs)
    for uri, says in [
        (f"file:datasets/{alices}.npz", "uploads folder"),
        (f"file:./datasets/{alices}.npz", "uploads folder"),
        (f"file:datasets//{alices}.npz", "uploads folder"),
        (f"file:datasets/.{alices}.upload", "uploads folder"),  # a staged upload
        (f"file:datasets/../datasets/{alices}.npz", "'..'"),
        ("file:link.npz", "uploads folder"),  # a symlink to the file
        (f"file:alias/{alices}.npz", "uploads folder"),  # a symlink to the folder
        (f"dataset:{alices}", "not found"),
    ]:
        problem = refused(client, make_spec(dataset={"uri": uri}), BOB,
                          "dataset-not-found" if uri.startswith("dataset:") else "dataset-invalid", says)
        assert problem["errors"][0]["pointer"] == "/dataset/uri"
    assert redis_client.zcard(jobs) == before
    assert client.get(f"/v1/datasets/{alices}", headers=BOB).status_code == 404
    assert client.delete(f"/v1/datasets/{alices}", headers=BOB).status_code == 404
    # The owner too reaches an upload only as dataset:<id>; the worker refuses the path the same way.
    refused(client, make_spec(dataset={"uri": f"file:datasets/{alices}.npz"}), ALICE, "dataset-invalid", "uploads folder")
    assert client.post("/v1/jobs", json=make_spec(dataset={"uri": f"dataset:{alices}"}), headers=ALICE).status_code == 202
    from worker.engine.data import load_arrays  # NumPy only

    for relative in (f"datasets/{alices}.npz", "link.npz", f"alias/{alices}.npz"):
        with pytest.raises(DatasetInvalid, match="uploads folder"):
            load_arrays(f"file:{relative}", data_root=root, max_bytes=10**8)


def test_an_uploads_arrays_must_fit_the_models_inputs(client: TestClient) -> None:
    rng = np.random.default_rng(1)
    numbers, category, y = rng.random((30, 8)), rng.integers(0, 10, (30, 5)), rng.integers(0, 3, 30)
    good = upload(client, x_numbers=numbers, x_category=category, y=y)
    spec = make_spec(model=TWO_INPUTS, dataset={"uri": good["uri"]})
    assert client.post("/v1/jobs", json=spec, headers=ALICE).status_code == 202

    single = upload(client, x=numbers, y=y)
    problem = refused(client, make_spec(model=TWO_INPUTS, dataset={"uri": single["uri"]}), ALICE, "dataset-invalid",
                      "named x_numbers, x_category")
    assert problem["expected"] == ["x_numbers", "x_category"] and problem["errors"][0]["pointer"] == "/dataset/uri"

    narrow = upload(client, x_numbers=numbers[:, :7], x_category=category, y=y)
    problem = refused(client, make_spec(model=TWO_INPUTS, dataset={"uri": narrow["uri"]}), ALICE, "dataset-invalid",
                      "x_numbers rows have shape [7] but the model's input 'numbers' expects [8]")
    assert problem["data_shape"] == [7] and problem["model_shape"] == [8]


def test_losses_are_checked_at_submit(client: TestClient) -> None:
    problem = refused(client, make_spec(loss="no_such_loss"), ALICE, "validation-error", "unknown loss 'no_such_loss'")
    assert "sparse_categorical_crossentropy" in problem["detail"] and problem["errors"][0]["pointer"] == "/loss"
    refused(client, make_spec(loss={"out": "mse", "other": "mae"}), ALICE, "config-invalid",
            "the model's outputs are ['out']")
    accepted = client.post("/v1/jobs", json=make_spec(loss="MeanSquaredError"), headers=ALICE)
    assert accepted.status_code == 202 and accepted.json()["spec"]["loss"] == "mean_squared_error"


def test_file_tables_get_the_same_checks_as_object_storage(client: TestClient, settings: Settings) -> None:
    """A `file:` CSV or Parquet under the data root is checked at submission like an `s3://` one: its columns
    must exist and fit the model (64 inputs, 10 classes here); an unknown folder is a 404-style 422."""
    folder = settings.data_root / "tables"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    header = ",".join([*(f"f{i}" for i in range(64)), "label"])
    rows = "".join(",".join([*(f"{v:.3f}" for v in rng.random(64)), str(i % 10)]) + "\n" for i in range(40))
    (folder / "digits.csv").write_text(f"{header}\n{rows}")
    features = [f"f{i}" for i in range(64)]
    problem = refused(client, make_spec(dataset={"uri": "file:tables/digits.csv", "columns": {"x": [*features[:63], "nope"],
                                                                                               "y": "label"}}),
                      ALICE, "dataset-invalid", "no column(s) ['nope']")
    assert "label" in problem["columns"]
    refused(client, make_spec(dataset={"uri": "file:tables/digits.csv"}), ALICE, "dataset-invalid", "needs dataset.columns")
    refused(client, make_spec(dataset={"uri": "file:nowhere/"}), ALICE, "dataset-not-found", "file:nowhere/ does not exist")
    accepted = client.post("/v1/jobs", json=make_spec(dataset={"uri": "file:tables/", "columns": {"x": features, "y": "label"}}),
                           headers=ALICE)
    assert accepted.status_code == 202, accepted.text
