"""Every forbidden model payload class in docs/api.md, "Model security", is a 422 naming it in `disallowed`,
creates no job, sends nothing to the queue, and imports nothing it names."""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from lrrt.settings import Settings
from lrrt.store.keys import Keys
from tests.service.api.conftest import ALICE, MLP, make_spec

CANARY = "tests.service.api.canary_module"
CANARY_MARKER = Path(tempfile.gettempdir()) / "lrrt-api-canary-imported"


def with_layer(layer: dict[str, Any]) -> dict[str, Any]:
    model = copy.deepcopy(MLP)
    model["config"]["layers"].insert(1, layer)
    return model


def with_activation(activation: Any) -> dict[str, Any]:
    model = copy.deepcopy(MLP)
    model["config"]["layers"][1]["config"]["activation"] = activation
    return model


def layer(class_name: str, config: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": class_name, "config": config or {"name": "x"},
            "registered_name": None, **fields}


FORBIDDEN: dict[str, tuple[dict[str, Any], str]] = {
    "Lambda": (with_layer(layer("Lambda", {"name": "l", "function": {
        "class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA", "defaults": None, "closure": None}}})),
        "Lambda"),
    "TFSMLayer": (with_layer(layer("TFSMLayer", {"name": "t", "filepath": "/tmp/saved", "call_endpoint": "serve"})),
                  "TFSMLayer"),
    "TorchModuleWrapper": (with_layer(layer("TorchModuleWrapper", {"name": "t", "module": "gASV"})),
                           "TorchModuleWrapper"),
    "JaxLayer": (with_layer(layer("JaxLayer", {"name": "j", "call_fn": "os.system"})), "JaxLayer"),
    "FlaxLayer": (with_layer(layer("FlaxLayer", {"name": "f", "module": "gASV"})), "FlaxLayer"),
    "foreign module": (with_layer({**layer("Dense", {"name": "d", "units": 4}), "module": CANARY}), CANARY),
    "__lambda__ activation": (with_activation({"class_name": "__lambda__", "config": {
        "code": "4wEAAAAAAAAA", "defaults": None, "closure": None}}), "__lambda__"),
    "function object": (with_activation({"module": CANARY, "class_name": "function", "config": "touch",
                                         "registered_name": "function"}), "function"),
    "registered_name mismatch": (with_layer({**layer("Dense", {"name": "d", "units": 4}),
                                             "registered_name": "canary>Dense"}), "canary>Dense"),
    # The surface the allow-list opened for real models (operation nodes, keras.applications' own layers):
    "operation that is not reviewed": (with_layer({"module": "keras.src.ops.numpy", "class_name": "Vectorize",
                                                   "config": {"name": "v", "pyfunc": "os.system"}}), "Vectorize"),
    "operation that takes a function": (with_layer({"module": "keras.src.ops.core", "class_name": "Map", "config": {
        "name": "m", "f": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA"}}}}), "Map"),
    "operation config smuggling a function": (with_layer({"module": "keras.src.ops.numpy", "class_name": "Add",
                                                          "registered_name": "Add", "config": {"name": "a", "fn": {
                                                              "module": CANARY, "class_name": "function",
                                                              "config": "touch", "registered_name": "function"}}}),
                                              "function"),
    "operation kwargs smuggling a lambda": (with_layer({
        "module": "keras.src.ops.numpy", "class_name": "Add", "registered_name": "Add", "config": {"name": "a"},
        "inbound_nodes": [{"args": [], "kwargs": {"x": {"class_name": "__lambda__", "config": {"code": "4wE"}}}}]}),
        "__lambda__"),
    "operation registered elsewhere": (with_layer({"module": "keras.src.ops.numpy", "class_name": "Add",
                                                   "registered_name": "canary>Add", "config": {"name": "a"}}),
                                       "canary>Add"),
    "operation from a foreign module": (with_layer({"module": CANARY, "class_name": "Add", "registered_name": "Add",
                                                    "config": {"name": "a"}}), CANARY),
    "get_file gadget as an operation": (with_layer({"module": "keras.src.utils.file_utils", "class_name": "get_file",
                                                    "config": {"origin": "http://127.0.0.1:1/x", "fname": "x"}}),
                                        "get_file"),
    "safe-mode switch-off as an operation": (with_layer({"module": "keras.src.saving.serialization_lib",
                                                         "class_name": "enable_unsafe_deserialization", "config": {}}),
                                             "enable_unsafe_deserialization"),
    "application layer from a foreign module": (with_layer({"module": CANARY, "class_name": "LayerScale",
                                                            "registered_name": "LayerScale",
                                                            "config": {"name": "s", "init_values": 1e-6,
                                                                       "projection_dim": 4}}), CANARY),
    "application layer registered elsewhere": (with_layer({"module": "keras.src.applications.convnext",
                                                           "class_name": "LayerScale",
                                                           "registered_name": "canary>LayerScale",
                                                           "config": {"name": "s", "init_values": 1e-6,
                                                                      "projection_dim": 4}}), "canary>LayerScale"),
    "preprocessing that reads files": (with_layer(layer("TextVectorization", {"name": "t",
                                                                              "vocabulary": "/etc/passwd"})),
                                       "TextVectorization"),
    "compile_config": ({**copy.deepcopy(MLP), "compile_config": {
        "loss": {"module": CANARY, "class_name": "function", "config": "touch"}, "optimizer": "adam"}},
        "compile_config"),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN))
def test_forbidden_model_is_422_and_never_reaches_a_worker(
    case: str, client: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    model, named = FORBIDDEN[case]
    keys = Keys(settings.key_prefix)
    jobs_before = redis_client.zcard(keys.tenant_jobs("alice"))
    queue_before = redis_client.llen(settings.queue)
    CANARY_MARKER.unlink(missing_ok=True)

    for body in (make_spec(model=model), make_spec(model=json.dumps(model))):
        response = client.post("/v1/jobs", json=body, headers=ALICE)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "urn:lrrt:problem:model-rejected"
        assert any(named in entry for entry in problem["disallowed"]), problem["disallowed"]
        assert named in problem["detail"]

    assert redis_client.zcard(keys.tenant_jobs("alice")) == jobs_before
    assert redis_client.llen(settings.queue) == queue_before
    assert CANARY not in sys.modules and not CANARY_MARKER.exists()


def test_non_model_top_level_is_rejected(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=make_spec(model={"class_name": "Dense", "config": {}}), headers=ALICE)
    assert response.status_code == 422 and response.json()["disallowed"] == ["Dense"]
