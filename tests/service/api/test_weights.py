"""Weights uploads and `weights` references at submission: stored and usable by their tenant only,
paged like jobs, capped in size, and every refusal a problem that says what to change."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lrrt.settings import Settings
from service.app import create_app
from tests.service.api.conftest import ALICE, BOB, make_spec
from tests.weights_files import keras3_file, legacy_tf_keras

PROBLEM = "application/problem+json"


def upload(client: TestClient, content: bytes, headers: dict[str, str] = ALICE, name: str = "m.weights.h5"):  # noqa: ANN201
    return client.post("/v1/weights", files={"file": (name, content, "application/octet-stream")}, headers=headers)


@pytest.fixture()
def weights_bytes(tmp_path: Path) -> bytes:
    return keras3_file(tmp_path / "m.weights.h5").read_bytes()


def test_upload_show_list_use_delete(client: TestClient, settings: Settings, weights_bytes: bytes) -> None:
    response = upload(client, weights_bytes)
    assert response.status_code == 201, response.text
    meta = response.json()
    assert meta["uri"] == f"weights:{meta['id']}" and meta["bytes"] == len(weights_bytes)
    assert meta["sha256"] == hashlib.sha256(weights_bytes).hexdigest() and meta["created_at"]
    assert meta["variables"]["layers/dense/vars/0"] == [64, 32] and meta["filename"] == "m.weights.h5"
    assert response.headers["location"] == f"/v1/weights/{meta['id']}"
    stored = settings.data_root / "weights" / f"{meta['id']}.weights.h5"
    assert stored.read_bytes() == weights_bytes

    assert client.get(f"/v1/weights/{meta['id']}", headers=ALICE).json() == meta
    assert meta["id"] in {w["id"] for w in client.get("/v1/weights", headers=ALICE).json()["items"]}
    job = client.post("/v1/jobs", json=make_spec(weights=meta["uri"]), headers=ALICE)
    assert job.status_code == 202, job.text

    assert client.delete(f"/v1/weights/{meta['id']}", headers=ALICE).status_code == 204
    assert not stored.exists()
    gone = client.get(f"/v1/weights/{meta['id']}", headers=ALICE)
    assert gone.status_code == 404 and gone.headers["content-type"] == PROBLEM
    refused = client.post("/v1/jobs", json=make_spec(weights=meta["uri"]), headers=ALICE)
    assert refused.status_code == 422 and refused.json()["type"].endswith("weights-not-found")


def test_list_is_paged_newest_first(client: TestClient, weights_bytes: bytes) -> None:
    mine = [upload(client, weights_bytes, BOB).json()["id"] for _ in range(3)]
    seen, token, pages = [], None, 0
    while True:
        params = {"page_size": 2, **({"page_token": token} if token else {})}
        page = client.get("/v1/weights", params=params, headers=BOB).json()
        assert len(page["items"]) <= 2
        seen += [w["id"] for w in page["items"]]
        pages += 1
        token = page["next_page_token"]
        if token is None:
            break
    assert pages >= 2 and len(seen) == len(set(seen))
    assert [i for i in seen if i in mine] == mine[::-1]
    bad = client.get("/v1/weights", params={"page_token": "not-a-token"}, headers=BOB)
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM


def test_another_tenants_weights_are_unknown_on_every_route(client: TestClient, weights_bytes: bytes) -> None:
    meta = upload(client, weights_bytes, ALICE).json()
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/v1/weights/{meta['id']}", headers=BOB)
        assert response.status_code == 404 and response.headers["content-type"] == PROBLEM, response.text
    assert meta["id"] not in {w["id"] for w in client.get("/v1/weights", headers=BOB).json()["items"]}
    submitted = client.post("/v1/jobs", json=make_spec(weights=meta["uri"]), headers=BOB)
    assert submitted.status_code == 422, submitted.text
    problem = submitted.json()
    assert problem["type"].endswith("weights-not-found") and "POST /v1/weights" in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/weights"
    unknown = client.post("/v1/jobs", json=make_spec(weights=f"weights:{'e' * 32}"), headers=ALICE)
    assert unknown.status_code == 422 and unknown.json()["detail"] == problem["detail"].replace(meta["id"], "e" * 32)
    assert client.get(f"/v1/weights/{meta['id']}", headers=ALICE).status_code == 200


def test_file_references_follow_the_dataset_path_rules(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    team = settings.data_root / "team"
    team.mkdir(exist_ok=True)
    keras3_file(team / "pretrained.weights.h5")
    legacy_tf_keras(team / "old.weights.h5")
    accepted = client.post("/v1/jobs", json=make_spec(weights="file:team/pretrained.weights.h5"), headers=ALICE)
    assert accepted.status_code == 202, accepted.text
    for reference, words in [("file:team/missing.weights.h5", "does not exist"), ("file:../x.weights.h5", "'..'"),
                             ("file:/etc/x.weights.h5", "relative"), ("file:team/m.weights.json", ".weights.h5"),
                             ("file:s3://bucket/m.weights.h5", "remote"), ("file:team/old.weights.h5", "model.load_weights"),
                             ("https://example.com/m.weights.h5", "weights:<id>")]:
        response = client.post("/v1/jobs", json=make_spec(weights=reference), headers=ALICE)
        assert response.status_code == 422 and response.headers["content-type"] == PROBLEM, (reference, response.text)
        assert words in str(response.json()), (reference, response.json())


@pytest.fixture(scope="module")
def small(settings: Settings) -> Iterator[TestClient]:
    capped = Settings(**{**settings.model_dump(), "max_weights_bytes": 4096})
    with TestClient(create_app(capped, reaper_interval_s=None)) as client:
        yield client


def test_a_file_over_the_cap_is_413_and_not_kept(small: TestClient, settings: Settings, weights_bytes: bytes) -> None:
    before = set((settings.data_root / "weights").glob("*"))
    response = upload(small, weights_bytes)
    assert response.status_code == 413 and response.headers["content-type"] == PROBLEM, response.text
    assert "LRRT_MAX_WEIGHTS_BYTES" in response.json()["detail"]
    assert set((settings.data_root / "weights").glob("*")) == before


def test_a_legacy_h5_is_422_saying_how_to_convert(client: TestClient, tmp_path: Path) -> None:
    response = upload(client, legacy_tf_keras(tmp_path / "old.h5").read_bytes(), name="old.h5")
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    assert "model.save_weights('model.weights.h5')" in response.json()["detail"]
