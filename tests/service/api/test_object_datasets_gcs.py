"""`gs://` datasets at submission, against a real GCS-compatible server (fake-gcs-server on 127.0.0.1):
the API's cheap checks (granted prefix, the object exists, a table's columns fit) go through gcsfs as
they go through s3fs for `s3://` (test_object_datasets.py holds the full set of spellings, which are
judged from the text alone and are the same for both schemes)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from lrrt.settings import Settings
from service.app import create_app
from tests.fixtures.gcs import GCS_BUCKET, GCS_PREFIXES, GCSServer
from tests.fixtures.s3 import npz_bytes
from tests.service.api.conftest import BOB
from tests.service.api.test_object_datasets import X, Y, post, refused


@pytest.fixture(scope="module")
def gcs_client(settings: Settings, gcs: GCSServer) -> Iterator[TestClient]:
    gcs.put("alice/digits.npz", npz_bytes(x=X, y=Y))
    buf = io.BytesIO()
    pq.write_table(pa.table({**{f"f{i}": X[:, i] for i in range(64)}, "label": Y}), buf)
    gcs.put("alice/table/part-0.parquet", buf.getvalue())
    with TestClient(create_app(settings.model_copy(update={"data_prefixes": GCS_PREFIXES}),
                               reaper_interval_s=None)) as c:
        yield c


def test_granted_gcs_objects_are_accepted(gcs_client: TestClient) -> None:
    assert post(gcs_client, f"gs://{GCS_BUCKET}/alice/digits.npz").status_code == 202
    columns = {"x": [f"f{i}" for i in range(64)], "y": "label"}
    assert post(gcs_client, f"gs://{GCS_BUCKET}/alice/table/", columns=columns).status_code == 202


def test_gcs_refusals_name_the_uri(gcs_client: TestClient) -> None:
    refused(gcs_client, f"gs://{GCS_BUCKET}/alice/missing.npz", "dataset-not-found", "does not exist")
    refused(gcs_client, f"gs://{GCS_BUCKET}/alice/table/", "dataset-invalid", "no column(s) ['nope']",
            columns={"x": "nope", "y": "label"})
    refused(gcs_client, f"gs://{GCS_BUCKET}/alice/digits.npz", "dataset-invalid", "not under a prefix", BOB)
    refused(gcs_client, f"s3://{GCS_BUCKET}/alice/digits.npz", "dataset-invalid", "not under a prefix")
