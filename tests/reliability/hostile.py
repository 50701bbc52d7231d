"""The app that the hostile-input tests attack, and the hostile payloads they share.

The app is built at import time, on the shared test Redis under a key prefix of its own: schemathesis
reads /openapi.json when its test module loads (its fixture-based loader does not work under pytest 9).
Caps are small so that bombs and oversized bodies are cheap to build. `conftest.hostile_settings`
deletes the prefix's keys and the data root at the end of the session.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from lrrt.settings import Settings
from service.app import create_app

PROBLEM = "application/problem+json"
BODY_CAP = 256 * 1024
DATASET_CAP = 2 * 1024 * 1024
CANARY = "tests.service.api.canary_module"
CANARY_MARKER = Path(tempfile.gettempdir()) / "lrrt-api-canary-imported"

HOSTILE_SETTINGS = Settings(
    redis_url=os.environ.get("LRRT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    key_prefix=f"lrrt-test-hostile-{uuid.uuid4().hex[:8]}",
    queue=f"lrrt-test-hostile-{uuid.uuid4().hex[:8]}",
    api_keys="alice:key-alice,bob:key-bob",
    data_root=Path(tempfile.mkdtemp(prefix="lrrt-hostile-")),
    max_unfinished_jobs=100_000,
    max_body_bytes=BODY_CAP,
    max_dataset_bytes=DATASET_CAP,
    max_weights_bytes=DATASET_CAP,
)
(HOSTILE_SETTINGS.data_root / "datasets").mkdir()
HOSTILE_APP = create_app(HOSTILE_SETTINGS, reaper_interval_s=None)


def assert_problem(response: Any, *statuses: int) -> dict[str, Any]:
    """A problem+json answer with one of `statuses`, with a detail and no stack trace."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == PROBLEM, response.headers
    problem = response.json()
    assert problem["status"] == response.status_code and problem["title"] and problem["detail"]
    assert "Traceback" not in response.text
    return problem


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


# ------------------------------------------------------------------------------------------ .npz payloads
def npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_with_header(shape: tuple, dtype: str = "<f4", data: bytes = b"\0" * 16) -> bytes:
    """A .npy member whose header says `shape` and `dtype`, followed by whatever `data` is."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (64 - (10 + len(header)) % 64 - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def bomb(declared_honestly: bool) -> bytes:
    """16 MiB of zeros as x.npy (plus 4 MiB as y.npy), deflated to a few KiB; with
    `declared_honestly=False` the zip directory claims 64 bytes for x, so only reading the data can tell."""
    zeros = np.zeros(4 * 1024 * 1024, dtype=np.float32)
    data = zip_of({"x.npy": npy_with_header(zeros.shape, "<f4", zeros.tobytes()),
                   "y.npy": npy_with_header((4 * 1024 * 1024,), "|u1", b"\0" * (4 * 1024 * 1024))},
                  zipfile.ZIP_DEFLATED)
    if declared_honestly:
        return data
    real = (len(npy_with_header(zeros.shape, "<f4", b"")) + zeros.nbytes).to_bytes(4, "little")
    return data.replace(real, (64).to_bytes(4, "little"))


VALID_NPZ = npz_bytes(x=np.arange(64, dtype=np.float32).reshape(16, 4), y=np.arange(16, dtype=np.int64))


def _valid_weights() -> bytes:
    from tests.weights_files import keras3_file

    with tempfile.TemporaryDirectory() as scratch:
        return keras3_file(Path(scratch) / "m.weights.h5").read_bytes()


#: Weights in Keras 3's layout for `tests.service.api.conftest.MLP`.
VALID_WEIGHTS = _valid_weights()


def upload(api: Any, data: bytes, headers: dict[str, str]) -> Any:
    return api.post("/v1/datasets", files={"file": ("d.npz", data, "application/octet-stream")}, headers=headers)
