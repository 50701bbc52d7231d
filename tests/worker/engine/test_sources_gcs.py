"""The same readers over Google Cloud Storage's API: `gs://` datasets read through gcsfs from a real
GCS-compatible HTTP server (fake-gcs-server on 127.0.0.1, tests/fixtures/gcs.py), every format the
object-storage path takes, a missing key as a clear problem, and the worker-local cache keyed by the
objects' versions (GCS's ETags), as the S3 tests in test_sources.py do against moto."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from lrrt.problems import DatasetNotFound
from lrrt.settings import Settings
from tests.fixtures.gcs import GCS_BUCKET, GCSServer
from tests.fixtures.s3 import npz_bytes
from tests.worker.engine.test_sources import FEATURES, IMAGE_INPUT, INPUT, image_bytes, ref, table
from worker.engine.sources import load_object


@pytest.fixture()
def caps(tmp_path: Path) -> Settings:
    return Settings(data_root=tmp_path, object_cache_dir=tmp_path / "cache")


def test_every_object_format_reads_from_gcs(gcs: GCSServer, caps: Settings) -> None:
    x, y = np.random.default_rng(1).random((20, 4), dtype=np.float32), np.arange(20) % 3
    npz = gcs.put("g/d.npz", npz_bytes(x=x, y=y))
    buf = io.BytesIO()
    pq.write_table(table(16), buf, row_group_size=8)
    gcs.put("g/t/part-0.parquet", buf.getvalue())
    buf = io.BytesIO()
    pq.write_table(table(24, start=16), buf, row_group_size=8)
    gcs.put("g/t/part-1.parquet", buf.getvalue())
    buf = io.BytesIO()
    pcsv.write_csv(table(12).drop(["vec"]), buf)
    csv = gcs.put("g/c.csv", buf.getvalue())

    arrays = load_object(ref(npz), caps, inputs=INPUT, seed=0)
    np.testing.assert_array_equal(arrays.x, x)
    np.testing.assert_array_equal(arrays.y, y)
    shards = load_object(ref(f"gs://{GCS_BUCKET}/g/t/", columns={"x": FEATURES, "y": "label"}), caps, inputs=INPUT, seed=0)
    assert shards.x.shape == (40, 4)
    np.testing.assert_array_equal(np.sort(shards.y), np.sort(np.arange(40) % 3))
    rows = load_object(ref(csv, columns={"x": FEATURES, "y": "label"}), caps, inputs=INPUT, seed=0)
    np.testing.assert_array_equal(rows.y, np.arange(12) % 3)
    with pytest.raises(DatasetNotFound, match=f"gs://{GCS_BUCKET}/g/missing.npz does not exist"):
        load_object(ref(f"gs://{GCS_BUCKET}/g/missing.npz"), caps, inputs=INPUT, seed=0)


def test_image_folder_from_gcs_and_the_cache_follows_the_object_version(gcs: GCSServer, caps: Settings) -> None:
    gcs.put("g/img/b/1.png", image_bytes((8, 8), "RGB", "PNG", 20))
    gcs.put("g/img/a/1.png", image_bytes((8, 8), "RGB", "PNG", 10))
    folder = ref(f"gs://{GCS_BUCKET}/g/img/")
    cache = caps.object_cache_dir or Path()
    first = load_object(folder, caps, inputs=IMAGE_INPUT, seed=0)
    assert first.classes == ("a", "b")
    assert first.x.dtype == np.uint8 and int(first.x[1].mean()) == 20
    entries = len(list(cache.glob("*.npz")))
    again = load_object(folder, caps, inputs=IMAGE_INPUT, seed=0)  # the same versions: from the cache
    np.testing.assert_array_equal(again.x, first.x)
    assert len(list(cache.glob("*.npz"))) == entries
    gcs.put("g/img/b/1.png", image_bytes((8, 8), "RGB", "PNG", 99))  # a new version: read again
    changed = load_object(folder, caps, inputs=IMAGE_INPUT, seed=0)
    assert int(changed.x[1].mean()) == 99
