"""`s3://` datasets at submission, against a real S3 server (moto's, on 127.0.0.1): a tenant reads only
its granted prefixes, however the key is spelled, and the refusal is the same whether or not the object
exists; a granted object must exist and a table's columns fit; a missing key, a refused credential or a
dead endpoint is a clear 422 naming the uri, never a trace. No job is created for any refusal."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient

from lrrt.settings import Settings
from service.app import create_app
from tests.fixtures.s3 import BUCKET, PREFIXES, PUBLIC, S3Server, npz_bytes
from tests.service.api.conftest import ALICE, BOB, MLP, make_spec, queued_job_ids

X = np.random.default_rng(0).random((40, 64), dtype=np.float32)
Y = np.arange(40) % 10


def parquet_bytes(rows: int = 40) -> bytes:
    table = pa.table({**{f"f{i}": X[:rows, i] for i in range(64)}, "label": Y[:rows]})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=16)
    return buf.getvalue()


@pytest.fixture(scope="module")
def objects(s3: S3Server) -> S3Server:
    s3.put("alice/digits.npz", npz_bytes(x=X, y=Y))
    s3.put("bob/secret.npz", npz_bytes(x=X, y=Y))
    s3.put("alice/table/part-0.parquet", parquet_bytes())
    s3.put("alice/table/part-1.parquet", parquet_bytes())
    s3.put("alice/one.csv", ("f0,f1,label\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(20))).encode())
    s3.put("shared.npz", npz_bytes(x=X, y=Y), bucket=PUBLIC)
    return s3


@pytest.fixture(scope="module")
def s3_settings(settings: Settings, objects: S3Server) -> Settings:
    return settings.model_copy(update={"data_prefixes": PREFIXES, "s3_endpoint_url": objects.url})


@pytest.fixture(scope="module")
def s3_client(s3_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(s3_settings, reaper_interval_s=None)) as c:
        yield c


def post(client: TestClient, uri: str, headers: dict[str, str] = ALICE, **dataset: Any) -> Any:
    body = json.dumps(make_spec(dataset={"uri": uri, **dataset}))  # ASCII-escaped: a lone surrogate travels as \ud800
    return client.post("/v1/jobs", content=body, headers={**headers, "Content-Type": "application/json"})


def refused(client: TestClient, uri: str, slug: str, says: str, headers: dict[str, str] = ALICE,
            **dataset: Any) -> dict[str, Any]:
    response = post(client, uri, headers, **dataset)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == f"urn:lrrt:problem:{slug}", problem
    assert says in problem["detail"], problem["detail"]
    assert "Traceback" not in response.text and "botocore" not in response.text
    return problem


def test_granted_objects_are_accepted(s3_client: TestClient) -> None:
    for uri, extra in ((f"s3://{BUCKET}/alice/digits.npz", {}),
                       (f"s3://{PUBLIC}/shared.npz", {}),
                       (f"s3://{BUCKET}/alice/table/", {"columns": {"x": [f"f{i}" for i in range(64)], "y": "label"}}),
                       (f"s3://{BUCKET}/alice/table/part-0.parquet", {"format": "parquet",
                                                                      "columns": {"x": [f"f{i}" for i in range(64)], "y": "label"}})):
        response = post(s3_client, uri, **extra)
        assert response.status_code == 202, (uri, response.text)


def test_every_tenant_reads_the_star_prefix_and_only_its_own(s3_client: TestClient) -> None:
    assert post(s3_client, f"s3://{PUBLIC}/shared.npz", BOB).status_code == 202
    assert post(s3_client, f"s3://{BUCKET}/bob/secret.npz", BOB).status_code == 202
    problem = refused(s3_client, f"s3://{BUCKET}/bob/secret.npz", "dataset-invalid", "not under a prefix your tenant may read")
    assert problem["granted"] == [f"s3://{BUCKET}/alice/", f"s3://{PUBLIC}/"]


def test_refusal_does_not_reveal_whether_the_object_exists(s3_client: TestClient) -> None:
    there = refused(s3_client, f"s3://{BUCKET}/bob/secret.npz", "dataset-invalid", "not under a prefix")
    absent = refused(s3_client, f"s3://{BUCKET}/bob/nothing.npz", "dataset-invalid", "not under a prefix")
    assert there["detail"].replace("secret", "X") == absent["detail"].replace("nothing", "X")
    assert {k: v for k, v in there.items() if k not in ("detail", "errors", "instance")} == \
        {k: v for k, v in absent.items() if k not in ("detail", "errors", "instance")}


HOSTILE = [
    (f"s3://{BUCKET}/alice/../bob/secret.npz", "'..' segment"),
    (f"s3://{BUCKET}/alice/./../bob/secret.npz", "'..' segment"),
    (f"s3://{BUCKET}/alice//bob/secret.npz", "empty"),
    (f"s3://{BUCKET}/alice/%2e%2e/bob/secret.npz", "percent-encoding"),
    (f"s3://{BUCKET}/alice%2F..%2Fbob/secret.npz", "percent-encoding"),
    (f"s3://{BUCKET}/alice/s3://{BUCKET}/bob/secret.npz", "':'"),
    (f"s3://{BUCKET}/alice/gs:/{BUCKET}/bob/secret.npz", "':'"),
    (f"s3://{BUCKET}/alice/x.npz?versionId=1", "'?'"),
    (f"s3://{BUCKET}/alice/*.npz", "glob"),
    (f"s3://{BUCKET}/alice\\..\\bob/secret.npz", "backslash"),
    (f"s3://{BUCKET}/alice/\x00/secret.npz", "control"),
    (f"s3://user:pw@{BUCKET}/alice/digits.npz", "not a bucket name"),
    (f"s3://{BUCKET}:9000/alice/digits.npz", "not a bucket name"),
    (f"s3://{BUCKET.upper()}/alice/digits.npz", "not a bucket name"),
    (f"s3://{BUCKET}/Alice/digits.npz", "not under a prefix"),
    (f"s3://{BUCKET}/alicex/digits.npz", "not under a prefix"),
    (f"s3://{BUCKET}/bob/secret.npz#/alice/", "'#'"),
    (f"s3://{BUCKET}", "bucket"),
    (f"s3:/{BUCKET}/alice/digits.npz", "s3://bucket/"),
    (f"gs://{BUCKET}/alice/digits.npz", "not under a prefix"),
    (f"s3://{BUCKET}/alice/\ud800.npz", "UTF-8"),
]


@pytest.mark.parametrize(("uri", "says"), HOSTILE, ids=[f"{i}" for i in range(len(HOSTILE))])
def test_hostile_spellings_are_refused_before_any_read(s3_client: TestClient, s3_settings: Settings,
                                                       redis_client: redis.Redis, uri: str, says: str) -> None:
    before = len(queued_job_ids(redis_client, s3_settings.queue))
    problem = refused(s3_client, uri, "dataset-invalid", says)
    assert problem["errors"][0]["pointer"] == "/dataset/uri"
    assert len(queued_job_ids(redis_client, s3_settings.queue)) == before


def test_missing_key_in_a_granted_prefix_names_the_uri(s3_client: TestClient) -> None:
    uri = f"s3://{BUCKET}/alice/missing.npz"
    refused(s3_client, uri, "dataset-not-found", uri)
    refused(s3_client, f"s3://{BUCKET}/alice/empty/", "dataset-not-found", "holds no objects")


def test_table_columns_must_exist_and_fit(s3_client: TestClient) -> None:
    table = f"s3://{BUCKET}/alice/table/"
    problem = refused(s3_client, table, "dataset-invalid", "no column(s) ['nope']", columns={"x": "nope", "y": "label"})
    assert "label" in problem["columns"]
    refused(s3_client, table, "dataset-invalid", "needs dataset.columns")
    refused(s3_client, table, "dataset-invalid", "use either 'x' or x_<name>", columns={"x": "f0", "x_a": "f1", "y": "label"})
    refused(s3_client, table, "dataset-invalid", "the model has one input", columns={"x_a": "f0", "x_b": "f1", "y": "label"})
    refused(s3_client, f"s3://{BUCKET}/alice/one.csv", "dataset-invalid", "no column(s) ['f9']",
            columns={"x": ["f0", "f9"], "y": "label"})
    assert post(s3_client, f"s3://{BUCKET}/alice/one.csv", columns={"x": ["f0", "f1"], "y": "label"}).status_code == 202
    refused(s3_client, f"s3://{BUCKET}/alice/digits.npz", "dataset-invalid", "applies to parquet and csv",
            columns={"x": "f0", "y": "label"})
    refused(s3_client, "builtin:digits", "dataset-invalid", "apply to s3://, gs:// and file:", format="csv")


def test_parquet_metadata_claiming_too_many_rows_is_refused(s3_client: TestClient, s3_settings: Settings,
                                                            objects: S3Server) -> None:
    objects.put("alice/big/part-0.parquet", parquet_bytes(40))
    small = s3_settings.model_copy(update={"max_table_rows": 30})
    with TestClient(create_app(small, reaper_interval_s=None)) as c:
        refused(c, f"s3://{BUCKET}/alice/big/", "cap-exceeded", "claims 40 rows; the limit is 30",
                columns={"x": [f"f{i}" for i in range(64)], "y": "label"})


def test_a_prefix_with_too_many_keys_is_refused_after_reading_one_page(s3_client: TestClient, s3_settings: Settings,
                                                                      objects: S3Server) -> None:
    for i in range(6):
        objects.put(f"alice/many/part-{i}.parquet", b"x")
    few = s3_settings.model_copy(update={"max_object_keys": 5})
    with TestClient(create_app(few, reaper_interval_s=None)) as c:
        refused(c, f"s3://{BUCKET}/alice/many/", "cap-exceeded", "holds more than 5 objects",
                columns={"x": "f0", "y": "label"})


def test_unreachable_store_is_a_clear_problem(settings: Settings) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = settings.model_copy(update={"data_prefixes": PREFIXES, "s3_endpoint_url": f"http://127.0.0.1:{port}"})
    with TestClient(create_app(dead, reaper_interval_s=None)) as c:
        problem = refused(c, f"s3://{BUCKET}/alice/digits.npz", "dataset-error", "could not be reached")
        assert problem["reason"] == "unreachable"


def test_wrong_credential_is_a_clear_problem(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, creds = S3Server.authenticated(tmp_path)
    try:
        server.client(aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"]).put_object(
            Bucket=BUCKET, Key="alice/digits.npz", Body=npz_bytes(x=X, y=Y))
        store = settings.model_copy(update={"data_prefixes": PREFIXES, "s3_endpoint_url": server.url})
        with TestClient(create_app(store, reaper_interval_s=None)) as c:
            for k, v in creds.items():
                monkeypatch.setenv(k, v)
            assert post(c, f"s3://{BUCKET}/alice/digits.npz").status_code == 202
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
            problem = refused(c, f"s3://{BUCKET}/alice/digits.npz", "dataset-error", "refused this deployment's credentials")
            assert problem["reason"] == "access-denied"
    finally:
        server.stop()


def test_model_json_stays_the_mlp() -> None:  # the specs above train the digits MLP on 64 features
    assert MLP["config"]["layers"][0]["config"]["batch_shape"] == [None, 64]


def png(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (value, value, value)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_folder_classes_must_fit_the_model(s3_client: TestClient, objects: S3Server) -> None:
    for cls in ("b", "a", "c"):
        objects.put(f"alice/imgs/{cls}/1.png", png(10))
    image_mlp = {**MLP, "config": {**MLP["config"], "layers": [
        {**MLP["config"]["layers"][0], "config": {**MLP["config"]["layers"][0]["config"], "batch_shape": [None, 4, 4, 3]}},
        {"module": "keras.layers", "class_name": "Flatten", "registered_name": None, "config": {"name": "flat"}},
        *MLP["config"]["layers"][1:]]}}
    body = make_spec(model=image_mlp, dataset={"uri": f"s3://{BUCKET}/alice/imgs/"})
    response = s3_client.post("/v1/jobs", json=body, headers=ALICE)
    assert response.status_code == 422, response.text
    assert "has 3 classes ['a', 'b', 'c'] but the model's output 'out' has 10 units" in response.json()["detail"]
    response = s3_client.post("/v1/jobs", json=make_spec(dataset={"uri": f"s3://{BUCKET}/alice/imgs/"}), headers=ALICE)
    assert response.status_code == 422 and "(height, width, channels)" in response.json()["detail"], response.text


def test_keys_that_are_not_printable_are_refused(s3_client: TestClient, objects: S3Server) -> None:
    objects.put("alice/odd/cls/\u0007bell.png", png(1))
    refused(s3_client, f"s3://{BUCKET}/alice/odd/", "dataset-error", "not printable UTF-8")
