"""Hostile input, case by case, in-process against the ASGI app (real Redis, no worker): each is a 4xx
problem, never a 5xx, never a stored object, never an import. The property-based hunt over the same
classes is `test_fuzz.py`.

- Model JSON that crashed the allow-list walk or the parameter estimate (found by the fuzzer).
- A compiled model's hostile `compile_config`: custom or foreign classes, functions and `__lambda__` objects
  where a loss or a setting goes, dotted names, huge numbers, depth; refused at the API and by the worker.
- A job's own hostile `loss_config`: a `reduction`, an unknown key, objects, huge strings, keys and numbers.
- Uploads: zip bombs (honest and lying sizes), pickled object arrays, huge or mismatched shapes, wrong
  dtypes, zip-slip names, corrupt archives.
- `file:` references: `..`, absolute paths, symlinks and symlinked directories out of the root, NUL
  bytes, overlong names; checked at the API and in the worker's own resolver.
- Oversized bodies (declared and chunked) and deeply nested ones.
- Missing, wrong and malformed keys on every route; another tenant's key sees and changes nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lrrt.problems import DatasetError, ModelRejected
from lrrt.settings import Settings
from lrrt.spec import JobSpec
from lrrt.vetting.vet import vet_spec
from tests.service.api.conftest import ALICE, BOB, MLP, make_spec

from .hostile import (
    BODY_CAP,
    CANARY,
    DATASET_CAP,
    HOSTILE_SETTINGS,
    VALID_NPZ,
    VALID_WEIGHTS,
    assert_problem,
    bomb,
    nested,
    npy_with_header,
    npz_bytes,
    upload,
    zip_of,
)
from .outcomes import report

pytestmark = pytest.mark.usefixtures("drop_queue")


# ------------------------------------------------------------------------------------------ model JSON
CRASHERS = {
    "unhashable top-level class_name": {"class_name": ["Sequential"], "config": {}},
    "unhashable layer class_name": {"class_name": "Sequential", "config": {"layers": [
        {"class_name": {"a": 1}, "config": {}}]}},
    "unhashable module": {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Dense", "module": ["keras.layers"], "config": {"units": 2}}]}},
    "layer that is a string": {"class_name": "Sequential", "config": {"layers": ["Dense"]}},
    "layer config that is a list": {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Dense", "config": [1]}]}},
}


@pytest.mark.parametrize("case", sorted(CRASHERS))
def test_model_json_that_crashed_the_checks_is_422(case: str, no_canary: None, api: TestClient) -> None:
    """Shapes the fuzzer found that raised TypeError/AttributeError inside the allow-list walk or the
    parameter estimate (a 500 at submission). Each must be a 422 problem."""
    for model in (CRASHERS[case], json.dumps(CRASHERS[case])):
        assert_problem(api.post("/v1/jobs", json=make_spec(model=model), headers=ALICE), 422)


# ------------------------------------------------------------------------------------------ compile_config
def _function(module: str, name: str) -> dict[str, Any]:
    """How Keras serializes a function: a loss or hyperparameter given as one names its module."""
    return {"module": module, "class_name": "function", "config": name, "registered_name": "function"}


def _adam(**config: Any) -> dict[str, Any]:
    return {"module": "keras.optimizers", "class_name": "Adam", "config": {"name": "adam", "learning_rate": 0.001, **config},
            "registered_name": None}


_LAMBDA = {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA", "defaults": None, "closure": None}}
#: Hostile `compile_config`s (the top level's, which `lrrt.vetting.compiled` reads): each is refused whether
#: or not the job names its own optimizers and loss, and names what it refuses (the substring here).
COMPILE_CONFIGS: dict[str, tuple[Any, str]] = {
    "custom optimizer class": ({"optimizer": {"module": CANARY, "class_name": "Evil", "config": {},
                                              "registered_name": "Custom>Evil"}}, "class 'Evil'"),
    "built-in optimizer registered elsewhere": ({"optimizer": {**_adam(), "registered_name": f"{CANARY}>Adam"}},
                                                f"registered as '{CANARY}>Adam'"),
    "built-in optimizer from a foreign module": ({"optimizer": {**_adam(), "module": CANARY}}, f"Adam from module '{CANARY}'"),
    "optimizer class we do not serve": ({"optimizer": {"module": "keras.optimizers", "class_name": "LossScaleOptimizer",
                                                       "config": {"inner_optimizer": _adam()}, "registered_name": None}},
                                        "class 'LossScaleOptimizer'"),
    "optimizer by dotted name": ({"optimizer": f"{CANARY}.Evil"}, "compile_config.optimizer"),
    "hyperparameter that is a function": ({"optimizer": _adam(beta_1=_function(CANARY, "touch"))},
                                          "compile_config.optimizer.config.beta_1"),
    "custom learning-rate schedule": ({"optimizer": _adam(learning_rate={"module": CANARY, "class_name": "Evil",
                                                                         "config": {}, "registered_name": None})},
                                      "compile_config.optimizer.config.learning_rate"),
    "schedule whose setting is a function": ({"optimizer": _adam(learning_rate={
        "module": "keras.optimizers.schedules", "class_name": "ExponentialDecay", "registered_name": None,
        "config": {"initial_learning_rate": _function("keras.utils", "get_file")}})},
        "learning_rate.config.initial_learning_rate"),
    "loss function from a module path": ({"loss": _function(CANARY, "touch")}, f"from module '{CANARY}'"),
    "builtins function that is not a loss name": ({"loss": _function("builtins", "os.system")}, "function 'os.system'"),
    "Lambda-ish loss": ({"loss": _LAMBDA}, "class '__lambda__'"),
    "loss object from a foreign module": ({"loss": {"module": "keras.saving", "class_name": "MeanSquaredError",
                                                    "config": {}, "registered_name": None}},
                                          "MeanSquaredError from module 'keras.saving'"),
    "custom loss class in keras.losses": ({"loss": {"module": "keras.losses", "class_name": "Evil", "config": {},
                                                    "registered_name": "Custom>Evil"}}, "class 'Evil'"),
    "loss by dotted name": ({"loss": f"{CANARY}.touch"}, "compile_config.loss"),
    "hostile loss of one output": ({"loss": {"a": "mse", "b": _function(CANARY, "touch")}}, "compile_config.loss[b]"),
    "loss setting that is an object": ({"loss": {"module": "keras.losses", "class_name": "Huber", "registered_name": None,
                                                 "config": {"delta": _LAMBDA}}}, "compile_config.loss.config.delta"),
    "10 000 losses": ({"loss": {f"o{i}": "mse" for i in range(10_000)}}, "with 10000 entries"),
    "unknown key": ({"optimizer": "adam", "custom_objects": {"Evil": CANARY}}, "compile_config.custom_objects"),
    "not an object": ("adam", "compile_config that is not an object"),
    "huge hyperparameter": ({"optimizer": _adam(epsilon=10**400)}, "compile_config.optimizer.config.epsilon"),
    "huge loss weight": ({"loss": "mse", "loss_weights": [10**400]}, "compile_config.loss_weights"),
    "loss weight that is an object": ({"loss": "mse", "loss_weights": {"out": _LAMBDA}}, "compile_config.loss_weights"),
    "nested 200 deep": ({"optimizer": nested(200)}, "max_json_depth"),
    "a nested model's compile_config": (None, "compile_config"),  # built below: Keras writes none there
}


def _model_with(compile_config: Any, case: str) -> dict[str, Any]:
    model = copy.deepcopy(MLP)
    if case == "a nested model's compile_config":
        inner = {**copy.deepcopy(MLP), "compile_config": {"optimizer": "adam", "loss": "mse"}}
        model["config"]["layers"] = [model["config"]["layers"][0], inner]
    else:
        model["compile_config"] = compile_config
    return model


@pytest.mark.parametrize("named_fields", [False, True], ids=["job names nothing", "job names its own"])
@pytest.mark.parametrize("case", sorted(COMPILE_CONFIGS))
def test_hostile_compile_config_is_422_at_the_api_and_in_the_worker(case: str, named_fields: bool, no_canary: None,
                                                                      api: TestClient, redis_client: redis.Redis) -> None:
    """Never deserialized: refused (`model-rejected`, or `cap-exceeded` for the depth), naming the field, at
    the API and by the worker's own first check (`vet_spec`), and nothing is queued or imported."""
    model = _model_with(COMPILE_CONFIGS[case][0], case)
    named = COMPILE_CONFIGS[case][1]
    body = make_spec(model=model)
    if not named_fields:
        del body["optimizers"], body["loss"]
    queued = redis_client.llen(HOSTILE_SETTINGS.queue)
    problem = assert_problem(api.post("/v1/jobs", json=body, headers=ALICE), 422)
    found = problem.get("cap") if named == "max_json_depth" else " ".join(problem.get("disallowed", []))
    assert named in (found or ""), problem
    assert redis_client.llen(HOSTILE_SETTINGS.queue) == queued
    if named != "max_json_depth":
        with pytest.raises(ModelRejected) as caught:  # what the worker runs before it builds anything
            vet_spec(JobSpec.model_validate(body), HOSTILE_SETTINGS)
        assert any(named in entry for entry in caught.value.extensions["disallowed"])


#: Hostile `loss_config`s a job sends itself (keyed by what the loss is): each is refused at the API naming
#: the field and what it refuses (the substring here); nothing queued. Keras never sees a setting it does not take.
LOSS_CONFIGS: dict[str, tuple[Any, Any, str]] = {
    "a reduction": ("sparse_categorical_crossentropy", {"reduction": "none"}, "not 'reduction'"),
    "a nested object value": ("sparse_categorical_crossentropy", {"from_logits": _LAMBDA}, "from_logits is true or false"),
    "a huge string value": ("categorical_crossentropy", {"label_smoothing": "9" * 100_000}, "label_smoothing is a number"),
    "an unknown key": ("sparse_categorical_crossentropy", {"custom_objects": {"Evil": CANARY}}, "not 'custom_objects'"),
    "a huge key": ("sparse_categorical_crossentropy", {"k" * 100_000: True}, "at most 128 characters"),
    "a huge number": ("categorical_focal_crossentropy", {"gamma": 10**400}, "gamma is a number from 0"),
    "settings of an output the loss does not name": ({"out": "mse"}, {"evil": {"from_logits": True}}, "names outputs"),
}


@pytest.mark.parametrize("case", sorted(LOSS_CONFIGS))
def test_hostile_loss_config_is_422_naming_the_field(case: str, no_canary: None, api: TestClient,
                                                     redis_client: redis.Redis) -> None:
    loss, config, named = LOSS_CONFIGS[case]
    body = {**make_spec(model=copy.deepcopy(MLP)), "loss": loss, "loss_config": config}
    queued = redis_client.llen(HOSTILE_SETTINGS.queue)
    problem = assert_problem(api.post("/v1/jobs", json=body, headers=ALICE), 422)
    assert named in problem["detail"] and problem["errors"][0]["pointer"].startswith("/loss_config"), problem
    assert redis_client.llen(HOSTILE_SETTINGS.queue) == queued


# ------------------------------------------------------------------------------------------ uploads
BAD_UPLOADS: dict[str, tuple[bytes, tuple[int, ...]]] = {
    "zip bomb, honest sizes": (bomb(True), (413,)),
    "zip bomb, lying sizes": (bomb(False), (413, 422)),
    "pickled object array": (npz_bytes(x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2)), (422,)),
    "pickle posing as .npy": (zip_of({"x.npy": b"\x80\x04\x95" + b"cos\nsystem\n" * 4, "y.npy": b"\0"}), (422,)),
    "header claims 10^12 rows": (zip_of({"x.npy": npy_with_header((10**12, 64)),
                                         "y.npy": npy_with_header((10**12,), "<i8")}), (422,)),
    "header claims 2^63 elements": (zip_of({"x.npy": npy_with_header((2**32, 2**31)),
                                            "y.npy": npy_with_header((2,), "<f4", b"\0" * 8)}), (422,)),
    "negative shape": (zip_of({"x.npy": npy_with_header((-4, 2)), "y.npy": npy_with_header((2,), "<f4", b"\0" * 8)}),
                       (422,)),
    "mismatched lengths": (npz_bytes(x=np.zeros((10, 4)), y=np.zeros(9)), (422,)),
    "x_val without y_val": (npz_bytes(x=np.zeros((4, 2)), y=np.zeros(4), x_val=np.zeros((2, 2))), (422,)),
    "x_val row shape differs": (npz_bytes(x=np.zeros((4, 2)), y=np.zeros(4), x_val=np.zeros((2, 3)),
                                          y_val=np.zeros(2)), (422,)),
    "zero rows": (npz_bytes(x=np.zeros((0, 4)), y=np.zeros(0)), (422,)),
    "scalar arrays": (npz_bytes(x=np.float32(1), y=np.float32(1)), (422,)),
    "unicode dtype": (npz_bytes(x=np.array(["a", "b"]), y=np.zeros(2)), (422,)),
    "bytes dtype": (npz_bytes(x=np.array([b"a", b"b"]), y=np.zeros(2)), (422,)),
    "complex dtype": (npz_bytes(x=np.zeros(2, dtype=np.complex64), y=np.zeros(2)), (422,)),
    "datetime dtype": (npz_bytes(x=np.zeros(2, dtype="datetime64[s]"), y=np.zeros(2)), (422,)),
    "structured dtype": (npz_bytes(x=np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), y=np.zeros(2)), (422,)),
    "void dtype": (npz_bytes(x=np.zeros(2, dtype="V4"), y=np.zeros(2)), (422,)),
    "extra member": (npz_bytes(x=np.zeros(2), y=np.zeros(2), evil=np.zeros(1)), (422,)),
    "zip-slip member name": (zip_of({"../../x.npy": npy_with_header((2,), "<f4", b"\0" * 8),
                                     "y.npy": npy_with_header((2,), "<f4", b"\0" * 8)}), (422,)),
    "missing y": (npz_bytes(x=np.zeros(2)), (422,)),
    "not a zip": (b"x,y\n1,2\n" * 100, (422,)),
    "empty file": (b"", (422,)),
    "truncated archive": (npz_bytes(x=np.zeros((50, 4)), y=np.zeros(50))[:-100], (422,)),
    "over the byte cap": (b"\0" * (DATASET_CAP + 1), (413,)),
}


def stored_datasets(settings: Settings, redis_client: redis.Redis) -> tuple[list[str], int]:
    files = sorted(p.name for p in (settings.data_root / "datasets").iterdir())
    keys = sum(1 for _ in redis_client.scan_iter(match=f"{settings.key_prefix}:dataset:*"))
    return files, keys


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_hostile_upload_is_4xx_and_stores_nothing(case: str, api: TestClient, hostile_settings: Settings,
                                                  redis_client: redis.Redis) -> None:
    data, statuses = BAD_UPLOADS[case]
    before = stored_datasets(hostile_settings, redis_client)
    assert_problem(upload(api, data, ALICE), *statuses)
    assert stored_datasets(hostile_settings, redis_client) == before


# ------------------------------------------------------------------------------------------ file: refs
FILE_REFS: dict[str, tuple[str, bool]] = {
    # name: (path after "file:", accepted)
    "plain": ("ok.npz", True),
    "symlink inside the root": ("inside-link.npz", True),
    "dot segment": ("./ok.npz", True),
    "parent traversal": ("../outside/secret.npz", False),
    "traversal in the middle": ("datasets/../../secret.npz", False),
    "absolute path": ("{outside}/secret.npz", False),
    "absolute path into the root": ("{root}/ok.npz", False),
    "symlink leading out": ("escape.npz", False),
    "symlinked directory leading out": ("escape-dir/secret.npz", False),
    "backslash traversal": ("..\\..\\secret.npz", False),
    "UNC path": ("\\\\server\\share\\x.npz", False),
    "drive letter": ("C:\\x.npz", False),
    "url-encoded traversal": ("%2e%2e/%2e%2e/secret.npz", False),
    "NUL byte": ("ok.npz\x00.txt", False),
    "overlong name": ("a" * 5000 + ".npz", False),
    "overlong path": ("a/" * 3000 + "x.npz", False),
    "directory": ("datasets", False),
    "missing": ("nope.npz", False),
}


@pytest.mark.parametrize("case", sorted(FILE_REFS))
def test_file_refs_stay_inside_the_data_root(case: str, api: TestClient, data_tree: dict[str, Path]) -> None:
    """At the API (422 at submission) and in the worker's own resolver (a DatasetError, never a crash)."""
    from worker.engine.data import safe_path

    relative, accepted = FILE_REFS[case]
    relative = relative.format(root=data_tree["root"], outside=data_tree["outside"])
    response = api.post("/v1/jobs", json=make_spec(dataset={"uri": f"file:{relative}"}), headers=ALICE)
    if accepted:
        assert response.status_code == 202, response.text
        assert safe_path(data_tree["root"], relative).is_relative_to(data_tree["root"].resolve())
    else:
        assert_problem(response, 422)
        with pytest.raises(DatasetError):
            safe_path(data_tree["root"], relative)


# ------------------------------------------------------------------------------------------ bodies
def test_oversized_bodies_are_413(api: TestClient) -> None:
    json_headers = {**ALICE, "content-type": "application/json"}
    declared = json.dumps(make_spec()).encode() + b" " * (BODY_CAP + 1)
    assert_problem(api.post("/v1/jobs", content=declared, headers=json_headers), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap counts the bytes as they arrive
        yield b'{"model": "'
        for _ in range(BODY_CAP // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    assert_problem(api.post("/v1/jobs", content=chunks(), headers=json_headers), 413)
    assert_problem(api.post("/v1/jobs", content=b"{" * (BODY_CAP + 1), headers=json_headers), 413)


DEEP_OR_MALFORMED = {
    "array nesting bomb": b"[" * 200_000 + b"]" * 200_000,
    "object nesting bomb": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "model 200 deep": json.dumps(make_spec(model=nested(200))).encode(),
    "model string 900 deep": json.dumps(make_spec(model=json.dumps(nested(900)))).encode(),
    "labels 800 deep": json.dumps(make_spec(labels=nested(800))).encode(),
    "optimizer params 800 deep": json.dumps(make_spec(optimizers=[{"name": "adam", "params": nested(800)}])).encode(),
    "sweep 800 deep": json.dumps(make_spec(sweep=nested(800))).encode(),
    "model with 6000 layers": json.dumps(make_spec(model={**MLP, "config": {
        **MLP["config"], "layers": MLP["config"]["layers"] * 2000}})).encode(),
    "5000 labels": json.dumps(make_spec(labels={str(i): "v" for i in range(5000)})).encode(),
    "non-finite numbers": b'{"model": 1e999999, "dataset": NaN}',
    "not UTF-8": b"\xff\xfe\x00garbage",
    "UTF-32 lookalike": b"\x00\x00\x00{\x00\x00\x00}\x00",
    "lone surrogate": b'{"model": "\\ud800", "dataset": {"uri": "builtin:digits"}}',
}


@pytest.mark.parametrize("case", sorted(DEEP_OR_MALFORMED))
def test_malformed_or_deep_bodies_are_4xx(case: str, api: TestClient) -> None:
    response = api.post("/v1/jobs", content=DEEP_OR_MALFORMED[case], headers={**ALICE, "content-type": "application/json"})
    assert_problem(response, 413, 422)


# ------------------------------------------------------------------------------------------ keys
@pytest.fixture(scope="module")
def alice_objects(api: TestClient) -> dict[str, str]:
    job = api.post("/v1/jobs", json=make_spec(), headers=ALICE)
    assert job.status_code == 202, job.text
    dataset = upload(api, VALID_NPZ, ALICE)
    assert dataset.status_code == 201, dataset.text
    weights = api.post("/v1/weights", files={"file": ("m.weights.h5", VALID_WEIGHTS, "application/octet-stream")},
                       headers=ALICE)
    assert weights.status_code == 201, weights.text
    return {"job_id": job.json()["id"], "dataset_id": dataset.json()["id"], "weights_id": weights.json()["id"]}


def tenant_routes(app: FastAPI, ids: dict[str, str]) -> list[tuple[str, str]]:
    """(method, path) of every /v1 operation in the OpenAPI document, with alice's real ids filled in."""
    return [(method.upper(), path.format(**ids))
            for path, operations in app.openapi()["paths"].items() if path.startswith("/v1/")
            for method in operations if method in ("get", "post", "put", "patch", "delete")]


BAD_AUTH: dict[str, dict[str, Any]] = {
    "missing": {},
    "wrong key": {"Authorization": "Bearer key-mallory"},
    "empty bearer": {"Authorization": "Bearer "},
    "basic scheme": {"Authorization": "Basic a2V5LWFsaWNlOg=="},
    "key without scheme": {"Authorization": "key-alice"},
    "prefix of a key": {"Authorization": "Bearer key-ali"},
    "key plus suffix": {"Authorization": "Bearer key-alice2"},
    "two keys": {"Authorization": "Bearer key-alice key-bob"},
    "non-ASCII key": {"Authorization": "Bearer key-al\u00efce".encode()},
}


@pytest.mark.parametrize("auth", sorted(BAD_AUTH))
def test_missing_or_wrong_keys_are_401_on_every_route(auth: str, api: TestClient, hostile_app: FastAPI,
                                                       alice_objects: dict[str, str]) -> None:
    routes = tenant_routes(hostile_app, alice_objects)
    assert len(routes) >= 10, routes
    for method, path in routes:
        response = api.request(method, path, headers=BAD_AUTH[auth])
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)


def test_another_tenants_key_sees_nothing_and_changes_nothing(api: TestClient, hostile_app: FastAPI,
                                                              alice_objects: dict[str, str]) -> None:
    job_id, dataset_id = alice_objects["job_id"], alice_objects["dataset_id"]
    for method, path in tenant_routes(hostile_app, alice_objects):
        if path.rstrip("/") in ("/v1/jobs", "/v1/datasets", "/v1/weights"):
            continue  # collection routes answer the caller's own (below)
        assert_problem(api.request(method, path, headers=BOB), 404)
    assert job_id not in {j["id"] for j in api.get("/v1/jobs", headers=BOB).json()["items"]}
    assert dataset_id not in {d["id"] for d in api.get("/v1/datasets", headers=BOB).json()["items"]}
    assert_problem(api.post("/v1/jobs", json=make_spec(dataset={"uri": f"dataset:{dataset_id}"}), headers=BOB), 422)
    after = api.get(f"/v1/jobs/{job_id}", headers=ALICE).json()
    assert after["status"] == "queued" and not after["cancel_requested"]
    assert api.get(f"/v1/datasets/{dataset_id}", headers=ALICE).status_code == 200


def test_reliability_doc_states_the_case_counts() -> None:
    """docs/reliability.md's "Hostile input" table says how many cases each table here holds: a case added
    or removed without updating the page fails here. (The 3 bodies beyond DEEP_OR_MALFORMED are
    `test_oversized_bodies_are_413`'s.)"""
    counts = {"uploads": len(BAD_UPLOADS), "file_refs": len(FILE_REFS), "bodies": len(DEEP_OR_MALFORMED) + 3,
              "bad_auth": len(BAD_AUTH), "compile_configs": len(COMPILE_CONFIGS), "loss_configs": len(LOSS_CONFIGS)}
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text(encoding="utf-8")
    for stated in (f"| {counts['uploads']} cases |", f"| {counts['file_refs']} cases, at the API",
                   f"| {counts['bodies']} cases |", f"| {counts['bad_auth']} x 13 requests |",
                   f"| {counts['compile_configs']} cases x (the job names its own",
                   f"| {counts['loss_configs']} cases, at the API |"):
        assert stated in doc, f"docs/reliability.md should say {stated!r} (the case tables hold {counts})"
    report({"input": "hostile input, case tables", "model_crashers": len(CRASHERS), **counts})
