"""A failure of our own stack (an import, XLA, a bug) is never blamed on the request: it leaves the engine
as it is, and the task layer reports it `internal` with the job id. Keras refusing the configuration is
`config-invalid` / `model-invalid`, with the fields to change as pointers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lrrt.problems import ConfigInvalid, EngineError, ModelInvalid
from tests.keras_models import make_spec
from worker.engine.data import Arrays
from worker.engine.faults import explained_by_request
from worker.engine.sweep import run_sweep


def _raised(outer: type[BaseException], inner: BaseException | None) -> BaseException:
    try:
        try:
            if inner is not None:
                raise inner
        except BaseException:
            raise outer("outer") from None  # `from None` hides the context from tracebacks, not from us
        raise outer("outer")
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(("exc", "explained"), [
    (_raised(ValueError, None), True),
    (_raised(TypeError, KeyError("units")), True),
    (_raised(ValueError, Exception("InvalidArgumentError: Dimensions must be equal")), True),  # TF's graph-time shapes
    (_raised(RuntimeError, ImportError("This requires the tensorflow module")), False),  # issue 20's JAX failure
    (_raised(ValueError, ModuleNotFoundError("tensorflow")), False),
    (_raised(RuntimeError, None), False),  # XLA's runtime errors
    (_raised(AttributeError, None), False),
    (_raised(AssertionError, None), False),
], ids=["value", "type-from-key", "value-from-op-error", "runtime-from-import", "value-from-import", "runtime",
        "attribute", "assertion"])
def test_only_keras_refusing_the_configuration_is_the_requests_fault(exc: BaseException, explained: bool) -> None:
    assert explained_by_request(exc) is explained


def _augmenting_job() -> tuple[object, Arrays]:
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Rescaling(0.5), keras.layers.Dense(3, activation="softmax")])
    rng = np.random.default_rng(0)
    spec = make_spec(json.loads(model.to_json()), num_steps=4, batch_size=8,
                     dataset={"uri": "builtin:digits", "validation_split": 0.0})
    return spec, Arrays(rng.random((32, 4), dtype=np.float32), rng.integers(0, 3, 32))


def test_an_import_failing_inside_training_is_ours(engine_root: Path, caps, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the JAX worker's old TensorFlow block did to every preprocessing layer, on TensorFlow: Keras's
    `in_tf_graph` cannot import TensorFlow. The job used to fail `config-invalid`, blaming loss and optimizer."""
    from keras.src.utils import backend_utils

    def no_tensorflow() -> bool:
        raise ImportError("This requires the tensorflow module. You can install it via `pip install tensorflow`")

    spec, data = _augmenting_job()
    monkeypatch.setattr(backend_utils, "in_tf_graph", no_tensorflow)
    with pytest.raises(Exception) as caught:
        run_sweep(spec, data_root=engine_root, caps=caps, data=data)
    assert not isinstance(caught.value, EngineError), caught.value
    assert "requires the tensorflow module" in str(caught.value)


def test_targets_that_do_not_fit_the_output_are_config_invalid_naming_loss_and_optimizer(engine_root: Path, caps) -> None:
    """Same number of values per row (so `check_targets` lets it through) but another shape: Keras refuses
    the loss on it while tracing, a ValueError raised from TensorFlow's InvalidArgumentError."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10), keras.layers.Reshape((2, 5))])
    rng = np.random.default_rng(0)
    spec = make_spec(json.loads(model.to_json()), loss="mse", num_steps=4, batch_size=8,
                     dataset={"uri": "builtin:digits", "validation_split": 0.0})
    data = Arrays(rng.random((32, 4), dtype=np.float32), rng.random((32, 10), dtype=np.float32))
    with pytest.raises(ConfigInvalid) as caught:
        run_sweep(spec, data_root=engine_root, caps=caps, data=data)
    assert "Dimensions must be equal" in caught.value.detail
    assert [e["pointer"] for e in caught.value.extensions["errors"]] == ["/loss", "/optimizers/0"]


def test_building_fails_as_ours_or_as_the_models(caps, monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer argument Keras refuses is `model-invalid` pointing at /model; an import failing while
    Keras deserializes is not the JSON's fault."""
    import keras

    from worker.engine.models import build_model

    config = json.loads(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).to_json())
    config["config"]["layers"][-1]["config"]["units"] = -3
    with pytest.raises(ModelInvalid) as caught:
        build_model(config, caps)
    assert caught.value.extensions["errors"][0]["pointer"] == "/model"

    def broken(*args: object, **kwargs: object) -> None:
        raise ImportError("This requires the tensorflow module")

    monkeypatch.setattr(keras.saving, "deserialize_keras_object", broken)
    with pytest.raises(ImportError):
        build_model(config, caps)
