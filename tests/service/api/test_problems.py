"""Every error is application/problem+json with a detail that says what to change; auth and tenancy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from lrrt.settings import Settings
from service.app import create_app
from tests.keras_models import digits_bomb
from tests.service.api.conftest import ALICE, BOB, make_spec, submit

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert PROBLEM_KEYS <= body.keys(), body
    assert body["status"] == status and body["type"].startswith("urn:lrrt:problem:")
    assert body["instance"] == response.request.url.path
    assert len(body["detail"]) > 20 and "Traceback" not in body["detail"]
    return body


@pytest.fixture(scope="module")
def small(settings: Settings) -> Iterator[TestClient]:
    """A server with tiny caps, for the over-a-cap answers."""
    capped = Settings(**{**settings.model_dump(), "max_body_bytes": 8000, "max_steps": 100, "max_batch_size": 64,
                         "max_repeats": 2, "max_layers": 5, "max_params": 5000, "max_json_depth": 12})
    with TestClient(create_app(capped, reaper_interval_s=None)) as client:
        yield client


def test_401_without_or_with_wrong_key(client: TestClient) -> None:
    missing = assert_problem(client.get("/v1/jobs"), 401)
    assert "Authorization: Bearer" in missing["detail"]
    wrong = client.get("/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert_problem(wrong, 401)
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/v1/jobs", headers={"Authorization": "Basic a2V5LWFsaWNl"}).status_code == 401


def test_404_unknown_route_and_job(client: TestClient) -> None:
    assert "/docs" in assert_problem(client.get("/v2/nothing"), 404)["detail"]
    assert_problem(client.get("/v1/jobs/0123456789abcdef0123456789abcdef", headers=ALICE), 404)
    assert_problem(client.get("/v1/jobs/..%2F..%2Fetc", headers=ALICE), 404)
    assert_problem(client.get("/v1/jobs/abc:result", headers=ALICE), 404)


def test_405_keeps_allow_header(client: TestClient) -> None:
    response = client.put("/v1/jobs", headers=ALICE)
    assert_problem(response, 405)
    assert "POST" in response.headers["allow"]


def test_422_validation_lists_fields_with_pointers(client: TestClient) -> None:
    spec = make_spec(sweep={"num_steps": 1, "start_lr": -1}, optimizers=[{"name": "sgdd"}])
    body = assert_problem(client.post("/v1/jobs", json=spec, headers=ALICE), 422)
    pointers = {e["pointer"] for e in body["errors"]}
    assert {"/sweep/num_steps", "/sweep/start_lr", "/optimizers/0/name"} <= pointers
    assert all(e["in"] == "body" and e["message"] for e in body["errors"])
    assert "unknown optimizer 'sgdd'" in " ".join(e["message"] for e in body["errors"])


def test_422_for_malformed_json_and_model_string(client: TestClient) -> None:
    broken = client.post("/v1/jobs", content=b'{"model": ', headers={**ALICE, "Content-Type": "application/json"})
    assert "not valid JSON" in assert_problem(broken, 422)["detail"]
    bad_model = client.post("/v1/jobs", json=make_spec(model="{not json"), headers=ALICE)
    assert assert_problem(bad_model, 422)["errors"][0]["pointer"] == "/model"


def test_json_depth_cap_is_422(client: TestClient, small: TestClient) -> None:
    bomb = b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post("/v1/jobs", content=bomb, headers={**ALICE, "Content-Type": "application/json"})
    assert assert_problem(response, 422)["errors"][0]["type"] == "json_too_deep"
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(20):
        node["config"] = {}
        node = node["config"]
    model = {"class_name": "Sequential", "config": {"layers": [], "x": deep}}
    capped = assert_problem(small.post("/v1/jobs", json=make_spec(model=model), headers=ALICE), 422)
    assert capped["cap"] == "max_json_depth" and capped["limit"] == 12


def test_413_declared_and_streamed(small: TestClient) -> None:
    big = make_spec(labels={f"k{i}": "v" * 250 for i in range(32)})
    declared = small.post("/v1/jobs", json=big, headers=ALICE)
    assert "8,000 bytes" in assert_problem(declared, 413)["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts what it reads
        yield b'{"labels": {'
        for i in range(100):
            yield f'"k{i}": "{"v" * 100}",'.encode()
        yield b'"end": "x"}}'

    streamed = small.post("/v1/jobs", content=chunks(), headers={**ALICE, "Content-Type": "application/json"})
    assert_problem(streamed, 413)


def test_caps_are_422_with_errors(small: TestClient) -> None:
    spec = make_spec(sweep={"num_steps": 500, "batch_size": 128, "repeats": 3})
    body = assert_problem(small.post("/v1/jobs", json=spec, headers=ALICE), 422)
    by_pointer = {e["pointer"]: e for e in body["errors"]}
    assert by_pointer["/sweep/num_steps"]["limit"] == 100 and by_pointer["/sweep/num_steps"]["value"] == 500
    assert set(by_pointer) == {"/sweep/num_steps", "/sweep/batch_size", "/sweep/repeats"}


def test_repeats_are_limited_by_the_setting_alone(settings: Settings, client: TestClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """LRRT_MAX_REPEATS above 10 lets more seeds through; over the cap is the clear cap-exceeded 422."""
    over = make_spec(sweep={"num_steps": 20, "repeats": settings.max_repeats + 1})
    body = assert_problem(client.post("/v1/jobs", json=over, headers=ALICE), 422)
    assert body["type"].endswith(":cap-exceeded")
    assert body["errors"][0]["pointer"] == "/sweep/repeats" and body["errors"][0]["limit"] == settings.max_repeats

    monkeypatch.setenv("LRRT_MAX_REPEATS", "25")
    roomy = Settings(**settings.model_dump(exclude={"max_repeats"}))
    assert roomy.max_repeats == 25
    with TestClient(create_app(roomy, reaper_interval_s=None)) as roomy_client:
        accepted = roomy_client.post("/v1/jobs", json=make_spec(sweep={"num_steps": 20, "repeats": 20}), headers=ALICE)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["spec"]["sweep"]["repeats"] == 20

def test_model_caps_are_422(small: TestClient) -> None:
    dense = {"class_name": "Dense", "config": {"units": 2}}
    tall = {"class_name": "Sequential", "config": {"layers": [dense] * 6}}
    layers = assert_problem(small.post("/v1/jobs", json=make_spec(model=tall), headers=ALICE), 422)
    assert layers["cap"] == "max_layers" and layers["value"] == 6
    huge = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Embedding", "config": {"input_dim": 10**9, "output_dim": 4096}}]}}
    params = assert_problem(small.post("/v1/jobs", json=make_spec(model=huge), headers=ALICE), 422)
    assert params["cap"] == "max_params" and params["value"] >= 4 * 10**12


def test_unknown_datasets_are_422(client: TestClient, tmp_path: Any, settings: Settings) -> None:
    for uri, pointer_text in [
        ("dataset:0123456789abcdef0123456789abcdef", "not found"),
        ("keras:imagenet", "unknown Keras dataset"),
        ("builtin:iris", "unknown builtin dataset"),
        ("file:/etc/passwd.npz", "relative"),
        ("file:../outside.npz", "'..'"),
        ("file:missing/data.npz", "does not exist"),
    ]:
        body = assert_problem(client.post("/v1/jobs", json=make_spec(dataset={"uri": uri}), headers=ALICE), 422)
        assert pointer_text in body["detail"], (uri, body["detail"])
        assert body["errors"][0]["pointer"] == "/dataset/uri"
    (tmp_path / "secret.npz").write_bytes(b"x")
    (settings.data_root / "escape").symlink_to(tmp_path)
    escaped = client.post("/v1/jobs", json=make_spec(dataset={"uri": "file:escape/secret.npz"}), headers=ALICE)
    assert "outside" in assert_problem(escaped, 422)["detail"]
    (settings.data_root / "mine.npz").write_bytes(b"x")
    assert client.post("/v1/jobs", json=make_spec(dataset={"uri": "file:mine.npz"}), headers=ALICE).status_code == 202


def test_500_is_a_problem_without_trace(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(settings, reaper_interval_s=None)

    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.state.store, "get", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/jobs/0123456789abcdef0123456789abcdef", headers=ALICE)
    assert_problem(response, 500)
    assert "secret internals" not in response.text


def test_other_tenant_gets_404_on_every_job_route(client: TestClient) -> None:
    job = submit(client)
    base = f"/v1/jobs/{job['id']}"
    for method, path in [("GET", base), ("GET", f"{base}/result"), ("GET", f"{base}/plot.png"),
                         ("GET", f"{base}/plot.svg"), ("GET", f"{base}/events"), ("POST", f"{base}/cancel"),
                         ("DELETE", base)]:
        response = client.request(method, path, headers=BOB)
        unknown = client.request(method, path.replace(job["id"], "f" * 32), headers=BOB)
        assert_problem(response, 404)
        assert response.json()["detail"].replace(job["id"], "f" * 32) == unknown.json()["detail"]
    assert job["id"] not in [j["id"] for j in client.get("/v1/jobs", headers=BOB).json()["items"]]
    assert client.get(base, headers=ALICE).json()["status"] == "queued"  # bob's cancel/delete did nothing


def test_auth_off_means_tenant_local(settings: Settings) -> None:
    open_settings = Settings(**{**settings.model_dump(), "api_keys": ""})
    with TestClient(create_app(open_settings, reaper_interval_s=None)) as client:
        job = submit(client, headers={})
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
        assert client.app.state.store.get(job["id"]).tenant == "local"


@pytest.mark.parametrize("blow_up", [{"class_name": "Resizing", "config": {"name": "big", "height": 8192, "width": 8192}},
                                     {"class_name": "UpSampling2D", "config": {"name": "big", "size": 300}}],
                         ids=["resizing", "upsampling"])
def test_memory_bombs_are_422_with_the_estimate_and_the_batch_that_fits(blow_up: dict[str, Any], client: TestClient,
                                                                         settings: Settings) -> None:
    """Issue 20: a 90-parameter model that upsamples the 8x8 digits is refused at submission, from the JSON
    alone, with what one step would need, the deployment's limit and the largest batch size that fits."""
    model = digits_bomb({"module": "keras.layers", "registered_name": None, **blow_up})
    response = client.post("/v1/jobs", json=make_spec(model=model, sweep={"num_steps": 20, "batch_size": 64}),
                           headers=ALICE)
    body = assert_problem(response, 422)
    assert body["type"].endswith("cap-exceeded") and body["cap"] == "memory_limit_bytes"
    assert body["limit"] == settings.memory_limit_bytes < body["value"]
    assert body["estimate"]["activations"] > body["estimate"]["weights"] * 10**6 and body["estimate"]["batch_size"] == 64
    assert 0 <= body["largest_batch_size"] < 64
    assert f"largest batch size that fits is {body['largest_batch_size']}" in body["detail"]
    assert "GiB" in body["detail"] and "sweep.batch_size" in body["detail"]
