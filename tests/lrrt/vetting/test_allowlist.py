"""Every forbidden payload shape in docs/api.md, "Model security", is refused before any of its code runs.

A canary module, written by the test into a temporary directory on sys.path, leaves a marker file
when it is imported or its function is called; the Lambda payload carries real bytecode that would
write the marker too. Positive controls prove the canary and the bytecode do fire when run.
"""

from __future__ import annotations

import base64
import copy
import importlib
import marshal
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from lrrt.problems import CapExceeded, ModelRejected
from lrrt.vetting.estimate import estimate
from lrrt.vetting.summary import summarize
from lrrt.vetting.vet import check_allowed
from tests.keras_models import make_spec, mlp_json

CANARY = "lrrt_engine_canary"


@pytest.fixture()
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    marker = tmp_path / "canary-fired"
    source = tmp_path / "canary_src"
    source.mkdir()
    (source / f"{CANARY}.py").write_text(
        "from pathlib import Path\n"
        f"MARKER = Path({str(marker)!r})\n"
        "MARKER.write_text('imported')\n"
        "def touch(*args, **kwargs):\n"
        "    MARKER.write_text('called')\n"
        "class Evil:\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        MARKER.write_text('constructed')\n"
    )
    monkeypatch.syspath_prepend(str(source))
    yield marker
    sys.modules.pop(CANARY, None)


def lambda_bytecode(marker: Path) -> str:
    namespace: dict[str, Any] = {}
    exec(f"def fn(x):\n    open({str(marker)!r}, 'w').write('lambda')\n    return x\n", namespace)
    return base64.b64encode(marshal.dumps(namespace["fn"].__code__)).decode()


def payloads(marker: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """(model JSON, a string the rejection must name) for each forbidden shape."""
    base = mlp_json()

    def with_layer(layer: dict[str, Any]) -> dict[str, Any]:
        model = copy.deepcopy(base)
        model["config"]["layers"].insert(2, layer)
        return model

    def with_config(key: str, value: Any) -> dict[str, Any]:
        model = copy.deepcopy(base)
        model["config"]["layers"][1]["config"][key] = value
        return model

    def layer(class_name: str, config: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {"module": "keras.layers", "class_name": class_name, "config": {"name": "x", **config},
                "registered_name": None, **fields}

    def function(module: str, name: str) -> dict[str, Any]:
        return {"module": module, "class_name": "function", "config": name, "registered_name": "function"}

    code = {"class_name": "__lambda__", "config": {"code": lambda_bytecode(marker), "defaults": None, "closure": None}}
    nested = copy.deepcopy(base)
    nested["config"]["layers"].insert(2, layer("Lambda", {"function": code}))
    nested_model = {"module": "keras", "class_name": "Sequential", "registered_name": None, "config": nested["config"]}
    outer = copy.deepcopy(base)
    outer["config"]["layers"] = [outer["config"]["layers"][0], nested_model]
    return {
        "Lambda with bytecode": (with_layer(layer("Lambda", {"function": code, "output_shape": [32]})), "Lambda"),
        "TFSMLayer": (with_layer(layer("TFSMLayer", {"filepath": str(marker.parent), "call_endpoint": "serve"})), "TFSMLayer"),
        "TorchModuleWrapper": (with_layer(layer("TorchModuleWrapper", {"module": "gASV"})), "TorchModuleWrapper"),
        "JaxLayer": (with_layer(layer("JaxLayer", {"call_fn": function(CANARY, "touch")})), "JaxLayer"),
        "FlaxLayer": (with_layer(layer("FlaxLayer", {"module": function(CANARY, "touch")})), "FlaxLayer"),
        "layer from a foreign module": (with_layer({**layer("Evil", {}), "module": CANARY}), CANARY),
        "built-in name from a foreign module": (with_layer({**layer("Dense", {"units": 4}), "module": CANARY}), CANARY),
        "initializer from a foreign module": (
            with_config("kernel_initializer", {"module": CANARY, "class_name": "Evil", "config": {}, "registered_name": None}),
            CANARY),
        "__lambda__ activation": (with_config("activation", code), "__lambda__"),
        "function activation (CVE-2025-1550)": (with_config("activation", function(CANARY, "touch")), "function"),
        "get_file gadget (CVE-2025-8747)": (with_config("kernel_initializer", function("keras.utils", "get_file")), "function"),
        "safe-mode switch-off (CVE-2025-9906)": (
            with_config("activation", function("keras.config", "enable_unsafe_deserialization")), "function"),
        "__function__ object": (with_config("activation", {"class_name": "__function__", "config": "touch"}), "__function__"),
        "activation by dotted name": (with_config("activation", f"{CANARY}.touch"), CANARY),
        "registered_name that differs": (with_layer({**layer("Dense", {"units": 4}), "registered_name": f"{CANARY}>Evil"}),
                                         f"{CANARY}>Evil"),
        "compile_config": ({**copy.deepcopy(base), "compile_config": {"loss": function(CANARY, "touch"), "optimizer": "adam"}},
                           "compile_config"),
        "Lambda inside a nested Sequential": (outer, "Lambda"),
        "foreign top-level module": ({**copy.deepcopy(base), "module": CANARY}, CANARY),
    }


CASES = sorted(payloads(Path("/nonexistent")))


def test_the_canary_and_the_bytecode_do_fire_when_run(canary: Path) -> None:
    importlib.import_module(CANARY)
    assert canary.read_text() == "imported"
    canary.unlink()
    types.FunctionType(marshal.loads(base64.b64decode(lambda_bytecode(canary))), {})(0)
    assert canary.read_text() == "lambda"


@pytest.mark.parametrize("case", CASES)
def test_allow_list_rejects_without_running_code(case: str, canary: Path) -> None:
    model, named = payloads(canary)[case]
    with pytest.raises(ModelRejected) as caught:
        check_allowed(summarize(model))
    problem = caught.value.problem()
    assert problem["type"] == "urn:lrrt:problem:model-rejected"
    assert any(named in entry for entry in problem["disallowed"]), problem["disallowed"]
    assert CANARY not in sys.modules and not canary.exists()


@pytest.mark.parametrize("case", CASES)
def test_worker_build_path_rejects_without_running_code(case: str, canary: Path, engine_root: Path, caps) -> None:
    from worker.engine.sweep import run_sweep

    model, named = payloads(canary)[case]
    with pytest.raises(ModelRejected) as caught:
        run_sweep(make_spec(model), data_root=engine_root, caps=caps)
    assert any(named in entry for entry in caught.value.extensions["disallowed"])
    assert CANARY not in sys.modules and not canary.exists()


def test_keras3_models_from_to_json_pass() -> None:
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", kernel_regularizer="l2",
                            kernel_constraint=keras.constraints.MaxNorm(2))(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    y = keras.layers.Dense(10, activation="softmax")(keras.layers.Add()([keras.layers.Dense(10)(x), keras.layers.Dense(10)(x)]))
    import json

    check_allowed(summarize(json.loads(keras.Model(inputs, y).to_json())))  # Functional carries compile_config {}
    check_allowed(summarize(mlp_json()))


def test_non_model_top_level_is_named() -> None:
    with pytest.raises(ModelRejected) as caught:
        check_allowed(summarize({"class_name": "Dense", "config": {}}))
    assert caught.value.extensions["disallowed"] == ["Dense"]


def test_depth_and_layer_caps() -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(100):
        deep = {"x": deep}
    model = mlp_json()
    model["config"]["layers"][1]["config"]["extra"] = deep
    with pytest.raises(CapExceeded) as caught:
        check_allowed(summarize(model), max_depth=64, max_layers=500)
    assert caught.value.extensions["cap"] == "max_json_depth"
    with pytest.raises(CapExceeded) as caught:
        check_allowed(summarize(mlp_json()), max_depth=64, max_layers=1)
    assert caught.value.extensions["cap"] == "max_layers"


def test_parameter_estimate_matches_keras_and_catches_huge_layers(caps) -> None:
    import json

    import keras

    from lrrt.vetting.vet import vet_model_json

    convnet = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"),
                                keras.layers.MaxPooling2D(), keras.layers.Conv2D(64, 3), keras.layers.BatchNormalization(),
                                keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(256),
                                keras.layers.Dense(10, activation="softmax")])
    config = json.loads(convnet.to_json())
    assert estimate(config).params == convnet.count_params()
    without_build_configs = json.loads(convnet.to_json().replace('"build_config"', '"ignored"'))
    assert estimate(without_build_configs).params == convnet.count_params()  # shapes propagated from the input

    huge = mlp_json(inputs=(1_000_000,))
    huge["config"]["layers"][1]["config"]["units"] = 1_000_000
    huge["config"]["layers"][1].pop("build_config", None)
    assert estimate(huge).params > 10**12
    with pytest.raises(CapExceeded) as caught:
        vet_model_json(huge, caps)  # refused from the JSON alone: no weight is ever allocated
    assert caught.value.extensions["cap"] == "max_params"
