"""Object storage end to end: a real `lrrt api` and a real Celery `lrrt worker`, both pointed at moto's S3
server on 127.0.0.1 by the deployment's environment (LRRT_S3_ENDPOINT_URL, AWS_* and LRRT_DATA_PREFIXES),
run two-arm jobs on an `.npz`, a sharded Parquet table, a CSV and an image folder in a bucket; refusals
(another tenant's prefix, a prefix not granted, hostile spellings, a missing key) are 422s at submit and
create no job."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from PIL import Image

from lrrt.client.api import Client
from lrrt.settings import Settings
from tests.e2e.conftest import Api, Worker, running_worker, server_env_for, wait_until
from tests.fixtures.s3 import BUCKET, PREFIXES, PUBLIC, S3Server, npz_bytes
from tests.keras_models import mlp_json

pytestmark = pytest.mark.e2e
FEATURES = [f"f{i}" for i in range(8)]


@pytest.fixture(scope="module")
def s3_env(s3: S3Server, settings: Settings) -> tuple[dict[str, str], Settings]:
    mine = settings.model_copy(update={"queue": f"{settings.queue}-s3"})
    return {**server_env_for(mine), **s3.env(), "LRRT_DATA_PREFIXES": PREFIXES}, mine


@pytest.fixture(scope="module")
def api(s3_env: tuple[dict[str, str], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    a = Api(s3_env[0], tmp_path_factory.mktemp("logs"))
    a.start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def worker(s3_env: tuple[dict[str, str], Settings], redis_client: redis.Redis,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    env, mine = s3_env
    with running_worker(env, tmp_path_factory.mktemp("logs"), f"e2e-s3-{mine.key_prefix}", mine, redis_client) as w:
        yield w


@pytest.fixture(scope="module")
def alice(api: Api, worker: Worker) -> Iterator[Client]:
    with Client(api.url, api_key="key-alice", timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def data(s3: S3Server) -> dict[str, str]:
    rng = np.random.default_rng(0)
    x = rng.random((300, 8), dtype=np.float32)
    y = (x[:, 0] * 3).astype(np.int64)
    uris = {"npz": s3.put("alice/e2e/d.npz", npz_bytes(x=x, y=y))}
    for shard in range(3):
        buf = io.BytesIO()
        rows = slice(shard * 100, shard * 100 + 100)
        pq.write_table(pa.table({**{f: x[rows, i] for i, f in enumerate(FEATURES)}, "label": y[rows]}), buf,
                       row_group_size=25)
        s3.put(f"alice/e2e/table/part-{shard}.parquet", buf.getvalue())
    uris["parquet"] = f"s3://{BUCKET}/alice/e2e/table/"
    lines = ",".join(FEATURES) + ",label\n" + "".join(",".join(f"{v:.5f}" for v in row) + f",{t}\n" for row, t in zip(x, y))
    uris["csv"] = s3.put("alice/e2e/t.csv", lines.encode())
    for cls, value in (("circle", 40), ("square", 140), ("triangle", 240)):
        for i in range(12):
            buf = io.BytesIO()
            Image.new("RGB", (10 + i, 9), (value, value - i, 5 * i)).save(buf, format="PNG" if i % 2 else "JPEG")
            s3.put(f"alice/e2e/shapes/{cls}/{i}.{'png' if i % 2 else 'jpg'}", buf.getvalue(), bucket=PUBLIC)
    uris["image_folder"] = f"s3://{PUBLIC}/alice/e2e/shapes/"
    return uris


def spec(model: dict[str, Any], dataset: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "dataset": dataset, "loss": "sparse_categorical_crossentropy",
            "optimizers": [{"name": "sgd"}, {"name": "adam"}],
            "sweep": {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 12, "batch_size": 8}, "backend": "tensorflow"}


def finished(client: Client, job_id: str) -> dict[str, Any]:
    job = wait_until(lambda: (j := client.status(job_id))["status"] in ("succeeded", "failed", "cancelled") and j,
                     300, f"job {job_id} to finish")
    assert job["status"] == "succeeded", job
    return client.result(job_id)


def test_two_arm_jobs_on_every_format_in_a_bucket(alice: Client, data: dict[str, str]) -> None:
    table = mlp_json((8,), hidden=8, outputs=3)
    jobs = {
        "npz": spec(table, {"uri": data["npz"]}),
        "parquet": spec(table, {"uri": data["parquet"], "columns": {"x": FEATURES, "y": "label"}, "max_samples": 120}),
        "csv": spec(table, {"uri": data["csv"], "columns": {"x": FEATURES, "y": "label"}}),
        "image_folder": spec(mlp_json((8, 8, 3), hidden=8, outputs=3), {"uri": data["image_folder"], "normalize": True}),
    }
    ids = {}
    for fmt, body in jobs.items():
        response = alice.http.post("/v1/jobs", json=body)
        assert response.status_code == 202, (fmt, response.text)
        ids[fmt] = response.json()["id"]
    for fmt, job_id in ids.items():
        result = finished(alice, job_id)
        assert [a["label"] for a in result["arms"]] == ["sgd", "adam"], fmt
        assert all(len(a["losses"]) > 0 for a in result["arms"]), fmt
        if fmt == "image_folder":
            assert result["engine"]["classes"] == ["circle", "square", "triangle"]
        else:
            assert "classes" not in result["engine"]


def test_refusals_create_no_job(alice: Client, api: Api, data: dict[str, str], s3: S3Server) -> None:
    s3.put("bob/private.npz", npz_bytes(x=np.zeros((10, 8), np.float32), y=np.zeros(10, np.int64)))
    s3.put("elsewhere/x.npz", npz_bytes(x=np.zeros((10, 8), np.float32), y=np.zeros(10, np.int64)))
    before = len(alice.jobs()["items"])
    model = mlp_json((8,), hidden=8, outputs=3)
    for uri, slug, says in (
        (f"s3://{BUCKET}/bob/private.npz", "dataset-invalid", "not under a prefix your tenant may read"),
        (f"s3://{BUCKET}/elsewhere/x.npz", "dataset-invalid", "not under a prefix your tenant may read"),
        (f"s3://{BUCKET}/alice/../bob/private.npz", "dataset-invalid", "'..' segment"),
        (f"s3://{BUCKET}/alice//bob/private.npz", "dataset-invalid", "empty"),
        (f"s3://{BUCKET}/alice/%2e%2e/bob/private.npz", "dataset-invalid", "percent-encoding"),
        (f"s3://{BUCKET}/alice/s3://{BUCKET}/bob/private.npz", "dataset-invalid", "':'"),
        (f"s3://{BUCKET}/alice/e2e/missing.npz", "dataset-not-found", "alice/e2e/missing.npz does not exist"),
    ):
        response = alice.http.post("/v1/jobs", json=spec(model, {"uri": uri}))
        assert response.status_code == 422, (uri, response.text)
        problem = response.json()
        assert problem["type"] == f"urn:lrrt:problem:{slug}" and says in problem["detail"], (uri, problem)
    after = len(alice.jobs()["items"])
    assert after == before


def test_a_credential_the_store_refuses_is_a_clear_problem(s3_env: tuple[dict[str, str], Settings], settings: Settings,
                                                           redis_client: redis.Redis,
                                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    """A store that checks credentials (moto's IAM): the API holds the valid key and accepts the job; the
    worker's key is wrong, so the job fails with a problem naming the uri and the credentials, no trace.
    An API with the wrong key refuses the job at submit the same way."""
    logs = tmp_path_factory.mktemp("auth")
    server, creds = S3Server.authenticated(logs)
    try:
        server.client(aws_access_key_id=creds["AWS_ACCESS_KEY_ID"], aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"]
                      ).put_object(Bucket=BUCKET, Key="alice/d.npz",
                                   Body=npz_bytes(x=np.zeros((40, 8), np.float32), y=np.zeros(40, np.int64)))
        mine = settings.model_copy(update={"queue": f"{settings.queue}-s3auth"})
        good = {**server_env_for(mine), "LRRT_S3_ENDPOINT_URL": server.url, "LRRT_DATA_PREFIXES": PREFIXES, **creds}
        wrong = {**good, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
        body = spec(mlp_json((8,), hidden=8, outputs=3), {"uri": f"s3://{BUCKET}/alice/d.npz"})
        api = Api(good, logs)
        api.start()
        try:
            with running_worker(wrong, logs, f"e2e-s3auth-{mine.key_prefix}", mine, redis_client), \
                    Client(api.url, api_key="key-alice", timeout=60) as c:
                response = c.http.post("/v1/jobs", json=body)
                assert response.status_code == 202, response.text
                job_id = response.json()["id"]
                job = wait_until(lambda: (j := c.status(job_id))["status"] in ("succeeded", "failed") and j, 300,
                                 "the job to end")
                assert job["status"] == "failed", job
                error = job["error"]
                assert error["type"] == "urn:lrrt:problem:dataset-error", error
                assert "refused this deployment's credentials" in error["detail"] and "s3://ml-data/alice/d.npz" in error["detail"]
                assert "Traceback" not in str(job) and "botocore" not in str(job)
        finally:
            api.stop()
        refusing = Api(wrong, logs)
        refusing.start()
        try:
            with Client(refusing.url, api_key="key-alice", timeout=60) as c:
                response = c.http.post("/v1/jobs", json=body)
            assert response.status_code == 422, response.text
            assert response.json()["reason"] == "access-denied"
        finally:
            refusing.stop()
    finally:
        server.stop()
