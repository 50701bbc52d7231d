"""Hostile weights, case by case, in-process against the ASGI app (real Redis, no worker), beside the
model-JSON and dataset cases of `test_hostile_input.py`: each upload is a 4xx problem that says what
to change and stores nothing; each `file:` reference to the same bytes is a 422 at submission; and the
worker's own loader refuses every one of them as a `WeightsError` before Keras opens the file.

Cases (`tests.weights_files.HOSTILE`): an external link, a soft link, a virtual dataset, external raw
storage, a declared shape far beyond its storage, string and compound dtypes, a dataset outside any
`vars` group, a tf.keras 2 legacy `.h5`, a file that is not HDF5, a truncated one, one with no
variables; plus another tenant's id, sharded and remote references, and an upload over the cap.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from lrrt.problems import WeightsError
from lrrt.settings import Settings
from tests.service.api.conftest import ALICE, BOB, make_spec
from tests.weights_files import HOSTILE

from .hostile import DATASET_CAP, VALID_WEIGHTS, assert_problem
from .outcomes import report

pytestmark = pytest.mark.usefixtures("drop_queue")


def upload(api: TestClient, data: bytes, headers: dict[str, str] = ALICE, name: str = "m.weights.h5"):  # noqa: ANN201
    return api.post("/v1/weights", files={"file": (name, data, "application/octet-stream")}, headers=headers)


def stored(settings: Settings, redis_client: redis.Redis) -> tuple[list[str], int]:
    folder = settings.data_root / "weights"
    files = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    return files, sum(1 for _ in redis_client.scan_iter(match=f"{settings.key_prefix}:weights:*"))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_weights_are_refused_everywhere(case: str, api: TestClient, hostile_settings: Settings,
                                                redis_client: redis.Redis, tmp_path: Path) -> None:
    from worker.engine.weights import load_into  # the worker's loader refuses before Keras opens the file

    build, words = HOSTILE[case]
    data = build(tmp_path / "case.weights.h5").read_bytes()
    before = stored(hostile_settings, redis_client)
    problem = assert_problem(upload(api, data), 422)
    assert words in problem["detail"] and "model.save_weights('model.weights.h5')" in problem["detail"], problem
    assert stored(hostile_settings, redis_client) == before

    relative = f"hostile/{case.replace(' ', '_')}.weights.h5"
    target = hostile_settings.data_root / relative
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(data)
    submitted = api.post("/v1/jobs", json=make_spec(weights=f"file:{relative}"), headers=ALICE)
    refused = assert_problem(submitted, 422)
    assert refused["errors"][0]["pointer"] == "/weights" and words in refused["detail"]

    with pytest.raises(WeightsError) as caught:
        load_into(None, f"file:{relative}", hostile_settings.data_root, hostile_settings)  # type: ignore[arg-type]
    assert words in caught.value.detail


def test_another_tenants_weights_are_a_404_style_422(api: TestClient) -> None:
    meta = upload(api, VALID_WEIGHTS, ALICE).json()
    assert_problem(api.get(f"/v1/weights/{meta['id']}", headers=BOB), 404)
    assert_problem(api.delete(f"/v1/weights/{meta['id']}", headers=BOB), 404)
    theirs = assert_problem(api.post("/v1/jobs", json=make_spec(weights=meta["uri"]), headers=BOB), 422)
    unknown = assert_problem(api.post("/v1/jobs", json=make_spec(weights=f"weights:{'d' * 32}"), headers=BOB), 422)
    assert theirs["type"] == unknown["type"] and theirs["type"].endswith("weights-not-found")
    assert api.get(f"/v1/weights/{meta['id']}", headers=ALICE).status_code == 200


@pytest.mark.parametrize("reference", ["file:m.weights.json", "file:s3://bucket/m.weights.h5", "gs://b/m.weights.h5",
                                       "file:../m.weights.h5", "file:weights/x.weights.h5", "weights:../../etc/passwd"])
def test_sharded_remote_and_escaping_references_are_422(reference: str, api: TestClient) -> None:
    assert_problem(api.post("/v1/jobs", json=make_spec(weights=reference), headers=ALICE), 422)


def test_an_upload_over_the_cap_is_413(api: TestClient, hostile_settings: Settings, redis_client: redis.Redis) -> None:
    before = stored(hostile_settings, redis_client)
    assert_problem(upload(api, b"\x89HDF\r\n\x1a\n" + b"\0" * (DATASET_CAP + 1)), 413)
    assert stored(hostile_settings, redis_client) == before


def test_report_hostile_weights_case_counts() -> None:
    report({"input": "hostile weights, case tables", "files": len(HOSTILE), "references": 6})
