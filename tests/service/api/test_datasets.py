"""Dataset uploads: a good .npz is stored and usable; every malformed one is a 4xx that leaves nothing behind."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from lrrt.settings import Settings
from lrrt.store.keys import Keys
from service.app import create_app
from tests.service.api.conftest import ALICE, BOB, make_spec

CAP = 200_000


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def upload(client: TestClient, content: bytes, headers: dict[str, str] = ALICE, name: str = "d.npz"):  # noqa: ANN201
    return client.post("/v1/datasets", files={"file": (name, content, "application/octet-stream")}, headers=headers)


@pytest.fixture(scope="module")
def small(settings: Settings) -> Iterator[TestClient]:
    capped = Settings(**{**settings.model_dump(), "max_dataset_bytes": CAP})
    with TestClient(create_app(capped, reaper_interval_s=None)) as client:
        yield client


def stored_state(redis_client: redis.Redis, settings: Settings) -> tuple[set[str], int]:
    files = {p.name for p in (settings.data_root / "datasets").iterdir()}
    return files, redis_client.zcard(Keys(settings.key_prefix).tenant_datasets("alice"))


def test_upload_get_list_use_delete(client: TestClient, settings: Settings) -> None:
    x = np.random.default_rng(0).random((120, 8, 8), dtype=np.float32)
    y = np.arange(120) % 10
    response = upload(client, npz(x=x, y=y, x_val=x[:20], y_val=y[:20]), name="digits.npz")
    assert response.status_code == 201, response.text
    meta = response.json()
    assert meta["uri"] == f"dataset:{meta['id']}"
    assert meta["shapes"] == {"x": [120, 8, 8], "y": [120], "x_val": [20, 8, 8], "y_val": [20]}
    assert meta["dtypes"]["x"] == "float32" and meta["filename"] == "digits.npz"
    assert response.headers["location"] == f"/v1/datasets/{meta['id']}"
    path = settings.data_root / "datasets" / f"{meta['id']}.npz"
    assert path.stat().st_size == meta["bytes"]
    with np.load(path) as stored:
        assert np.array_equal(stored["x"], x)

    assert client.get(f"/v1/datasets/{meta['id']}", headers=ALICE).json() == meta
    assert meta["id"] in [d["id"] for d in client.get("/v1/datasets", headers=ALICE).json()["items"]]
    job = client.post("/v1/jobs", json=make_spec(dataset={"uri": meta["uri"]}), headers=ALICE)
    assert job.status_code == 202

    # Bob can neither see it nor run a job on it.
    assert client.get(f"/v1/datasets/{meta['id']}", headers=BOB).status_code == 404
    assert client.delete(f"/v1/datasets/{meta['id']}", headers=BOB).status_code == 404
    assert meta["id"] not in [d["id"] for d in client.get("/v1/datasets", headers=BOB).json()["items"]]
    bobs = client.post("/v1/jobs", json=make_spec(dataset={"uri": meta["uri"]}), headers=BOB)
    assert bobs.status_code == 422 and "not found" in bobs.json()["detail"]

    assert client.delete(f"/v1/datasets/{meta['id']}", headers=ALICE).status_code == 204
    assert not path.exists()
    assert client.get(f"/v1/datasets/{meta['id']}", headers=ALICE).status_code == 404


def object_array_npz() -> bytes:
    return npz(x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))


def lying_header_npz() -> bytes:
    """A valid-looking x.npy whose header claims 10^12 rows over 16 bytes of data."""
    real = io.BytesIO()
    np.save(real, np.zeros(2, dtype=np.float64))
    raw = real.getvalue().replace(b"(2,)", b"(1000000000000,)".ljust(4), 1)
    header_len = raw.index(b"\n") + 1 - 10
    raw = raw[:8] + struct.pack("<H", header_len) + raw[10:]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", raw)
        archive.writestr("y.npy", real.getvalue())
    return buffer.getvalue()


def zip_bomb() -> bytes:
    """A few KB that declare megabytes: zeros compress about 1000:1."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in ("x", "y"):
            member = io.BytesIO()
            np.save(member, np.zeros(2_000_000, dtype=np.uint8))
            archive.writestr(f"{name}.npy", member.getvalue())
    return buffer.getvalue()


BAD_UPLOADS = {
    "pickled object array": (object_array_npz, 422, "Python objects"),
    "mismatched lengths": (lambda: npz(x=np.zeros((10, 4)), y=np.zeros(9)), 422, "10 rows but y has 9"),
    "missing y": (lambda: npz(x=np.zeros((10, 4))), 422, "Missing array(s) y"),
    "extra array": (lambda: npz(x=np.zeros((3, 1)), y=np.zeros(3), w=np.zeros(3)), 422, "'w.npy'"),
    "x_val without y_val": (lambda: npz(x=np.zeros((3, 1)), y=np.zeros(3), x_val=np.zeros((2, 1))), 422, "together"),
    "string dtype": (lambda: npz(x=np.array(["a", "b"]), y=np.zeros(2)), 422, "numeric dtype"),
    "not a zip": (lambda: b"x,y\n1,2\n", 422, "not an .npz"),
    "empty": (lambda: b"", 422, "empty"),
    "lying header": (lying_header_npz, 422, "truncated or corrupt"),
    "zip bomb": (zip_bomb, 413, "unpack to 4,000,"),
    # Just over the cap: within the multipart slack, so the copy to disk stops it.
    "over size": (lambda: npz(x=np.zeros((CAP // 8 + 2500, 1)), y=np.zeros(1)), 413, "dataset limit of 200,000"),
    # Far over: refused from Content-Length before the body is read.
    "far over size": (lambda: npz(x=np.zeros((CAP // 4, 1)), y=np.zeros(1)), 413, "limit of 265,536 bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_is_4xx_and_nothing_is_stored(
    case: str, small: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    make, status, says = BAD_UPLOADS[case]
    before = stored_state(redis_client, settings)
    response = upload(small, make())
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert says in response.json()["detail"]
    assert stored_state(redis_client, settings) == before


def test_upload_without_file_field_is_422(client: TestClient) -> None:
    response = client.post("/v1/datasets", data={"nothing": "here"}, headers=ALICE)
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/file"

