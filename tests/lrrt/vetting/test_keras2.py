"""Keras 2 / tf.keras 2.x JSON (hand-written fixtures in the formats tf.keras 2.12 and 2.15 emit) builds and sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrrt.problems import ModelRejected
from lrrt.vetting.estimate import estimate
from lrrt.vetting.keras2 import is_legacy, to_keras3
from lrrt.vetting.summary import summarize
from lrrt.vetting.vet import check_allowed
from tests.keras_models import make_spec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.mark.parametrize("name, params, shape", [
    ("tf_keras_2_12_sequential", 2_778, (None, 8, 8, 1)),
    ("tf_keras_2_15_functional", 3_466, (None, 64)),
])
def test_keras2_json_is_rewritten_checked_and_built(name: str, params: int, shape: tuple, caps) -> None:
    import keras

    from lrrt.vetting.vet import vet_model_json
    from worker.engine.models import build_model

    raw = fixture(name)
    assert is_legacy(raw)
    with pytest.raises(Exception, match="Could not locate class"):
        keras.models.model_from_json(json.dumps(raw))  # why the rewrite exists
    check_allowed(summarize(raw))
    converted = to_keras3(raw)
    check_allowed(summarize(converted))
    assert not is_legacy(converted) and raw == fixture(name)  # the input is not mutated
    model = build_model(vet_model_json(raw, caps), caps)
    assert model.count_params() == params == estimate(converted).params
    assert tuple(model.inputs[0].shape) == shape


def test_keras2_sequential_sweeps_on_digits_reshaped_to_8x8x1(engine_root: Path, caps) -> None:
    from worker.engine.sweep import run_sweep

    result = run_sweep(make_spec(fixture("tf_keras_2_12_sequential"), num_steps=30), data_root=engine_root, caps=caps)
    assert len(result["arms"][0]["losses"]) == 30


def test_forbidden_classes_are_still_caught_in_keras2_json() -> None:
    raw = fixture("tf_keras_2_12_sequential")
    raw["config"]["layers"].insert(2, {"class_name": "Lambda", "config": {"name": "l", "function": ["4wEAAAA", None, None],
                                                                          "function_type": "lambda"}})
    with pytest.raises(ModelRejected) as caught:
        check_allowed(summarize(raw))
    assert "Lambda" in caught.value.extensions["disallowed"]


def test_keras3_json_passes_through_unchanged() -> None:
    from tests.keras_models import mlp_json

    model = mlp_json()
    assert not is_legacy(model) and to_keras3(model) == model
