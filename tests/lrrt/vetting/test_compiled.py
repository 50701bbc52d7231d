"""A compiled model's `compile_config` read through the allow-list (`lrrt.vetting.compiled`) into job fields
(`JobSpec`): every optimizer we serve with its hyperparameters, every loss form Keras writes (name,
function, object, one per output as a dict or a list), loss weights, what is ignored, and what a job
cannot express. The `compile_config`s are Keras's own (`model.compile(...)` then `to_json()`), so the
tables cannot drift from the Keras we serve; the hostile ones are in tests/reliability.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from lrrt.settings import Settings
from lrrt.spec import LOSS_NAMES, OPTIMIZER_NAMES, JobSpec
from lrrt.vetting import compiled
from lrrt.vetting.summary import summarize
from lrrt.vetting.vet import check_allowed, vet_spec
from worker.engine.sweep import _optimizer

keras = pytest.importorskip("keras")

DIGITS = {"uri": "builtin:digits"}

#: A non-default value of each optimizer's own hyperparameters, so that reading them back proves they were read.
OWN_VALUES: dict[str, dict[str, Any]] = {
    "SGD": {"momentum": 0.9, "nesterov": True},
    "Adam": {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6, "amsgrad": True},
    "AdamW": {"beta_1": 0.85, "beta_2": 0.98, "epsilon": 1e-8, "amsgrad": False},
    "RMSprop": {"rho": 0.8, "momentum": 0.5, "epsilon": 1e-6, "centered": True},
    "Adagrad": {"initial_accumulator_value": 0.2, "epsilon": 1e-6},
    "Adadelta": {"rho": 0.9, "epsilon": 1e-6},
    "Adamax": {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6},
    "Nadam": {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6},
    "Ftrl": {"learning_rate_power": -0.4, "initial_accumulator_value": 0.2, "l1_regularization_strength": 0.01,
             "l2_regularization_strength": 0.02, "l2_shrinkage_regularization_strength": 0.03, "beta": 0.1},
    "Lion": {"beta_1": 0.8, "beta_2": 0.95},
    "Lamb": {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6},
    "Adafactor": {"beta_2_decay": -0.7, "epsilon_1": 1e-29, "epsilon_2": 0.002, "clip_threshold": 2.0, "relative_step": False},
}
#: Settings every optimizer takes, set away from their defaults.
COMMON_VALUES = {"weight_decay": 0.01, "clipnorm": 1.0, "use_ema": True, "ema_momentum": 0.9}


def compiled_json(optimizer: Any = "adam", loss: Any = "sparse_categorical_crossentropy", *, outputs: int = 1,
                  **compile_args: Any) -> dict[str, Any]:
    """`to_json()` of a small model compiled with these arguments (two outputs, `a` and `b`, when asked)."""
    inputs = keras.Input((8,), name="x")
    heads = [keras.layers.Dense(4, name=name, activation="softmax")(inputs) for name in "ab"[:outputs]]
    model = keras.Model(inputs, heads if outputs > 1 else heads[0])
    model.compile(optimizer=optimizer, loss=loss, **compile_args)
    return json.loads(model.to_json())


def spec_of(model: dict[str, Any], **fields: Any) -> JobSpec:
    return JobSpec.model_validate({"model": model, "dataset": DIGITS, **fields})


def codes(spec: JobSpec) -> list[str]:
    return [note["code"] for note in spec.compiled_notes()]


def test_the_tables_hold_to_the_keras_we_serve() -> None:
    """Each optimizer class we read is one we serve and takes exactly the hyperparameters listed; each loss
    class maps to a served identifier, with the settings and defaults its `get_config` writes."""
    assert {name.lower() for name in compiled.OPTIMIZER_CLASSES} == OPTIMIZER_NAMES
    for name, own in compiled.OPTIMIZER_CLASSES.items():
        written = set(getattr(keras.optimizers, name)().get_config())
        assert written == own | compiled.OPTIMIZER_COMMON | {"name", "learning_rate"}, name
    for name, (identifier, defaults) in compiled.LOSS_CLASSES.items():
        assert identifier in LOSS_NAMES, name
        config = getattr(keras.losses, name)().get_config()
        assert {k: v for k, v in config.items() if k not in compiled.LOSS_PASSIVE | {"reduction"}} == defaults, name
        assert config["reduction"] == compiled.DEFAULT_REDUCTION


@pytest.mark.parametrize("name", sorted(compiled.OPTIMIZER_CLASSES))
def test_every_optimizer_we_serve_becomes_one_arm_with_its_hyperparameters(name: str) -> None:
    optimizer = getattr(keras.optimizers, name)(learning_rate=0.05, **OWN_VALUES[name], **COMMON_VALUES)
    model = compiled_json(optimizer)
    check_allowed(summarize(model))  # the safety verdict: accepted
    spec = spec_of(model)
    [arm] = spec.optimizers
    assert arm.name == name.lower() and arm.display_label == name.lower()
    assert arm.params == pytest.approx({**OWN_VALUES[name], **COMMON_VALUES}), arm.params
    # the engine builds the arm exactly so (`worker.engine.sweep._optimizer`): Keras takes every param
    rebuilt = getattr(keras.optimizers, name)(learning_rate=0.1, **arm.params)
    assert rebuilt.get_config()["weight_decay"] == pytest.approx(0.01)
    assert type(_optimizer(arm, 0.1)) is type(rebuilt)  # Lamb too, which Keras 3.15's `optimizers.get` lacks
    assert codes(spec)[:2] == ["compiled_optimizer_used", "compiled_learning_rate"]
    assert "0.05" in spec.compiled_notes()[1]["message"]


def test_defaults_and_inert_settings_are_left_out_and_a_schedule_is_noted() -> None:
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.9)
    spec = spec_of(compiled_json(keras.optimizers.SGD(schedule), metrics=["accuracy"], steps_per_execution=4))
    assert spec.optimizers[0].params == {"momentum": 0.0, "nesterov": False}  # None (unset) and EMA-off settings dropped
    notes = {note["code"]: note["message"] for note in spec.compiled_notes()}
    assert "ExponentialDecay schedule" in notes["compiled_learning_rate"]
    assert "metrics, steps_per_execution" in notes["compiled_setting_ignored"]


def test_gradient_accumulation_and_loss_scaling_are_noted_not_applied() -> None:
    spec = spec_of(compiled_json(keras.optimizers.Adam(gradient_accumulation_steps=4, loss_scale_factor=128.0)))
    assert not {"gradient_accumulation_steps", "loss_scale_factor"} & spec.optimizers[0].params.keys()
    ignored = [n["message"] for n in spec.compiled_notes() if n["code"] == "compiled_setting_ignored"]
    assert any("gradient_accumulation_steps=4" in m and "batch size times 4" in m for m in ignored), ignored
    assert any("loss_scale_factor=128.0" in m for m in ignored), ignored


@pytest.mark.parametrize("loss, expected", [
    ("sparse_categorical_crossentropy", "sparse_categorical_crossentropy"),
    ("MSE", "mse"),
    (keras.losses.sparse_categorical_crossentropy, "sparse_categorical_crossentropy"),  # the tutorial's form
    (keras.losses.CategoricalCrossentropy(), "categorical_crossentropy"),
    (keras.losses.KLDivergence(), "kl_divergence"),
    (keras.losses.Huber(), "huber"),
])
def test_each_loss_form_becomes_the_jobs_loss(loss: Any, expected: str) -> None:
    spec = spec_of(compiled_json(loss=loss))
    assert spec.loss == expected
    assert "compiled_loss_used" in codes(spec)


def test_losses_per_output_as_a_dict_or_a_list_with_their_weights() -> None:
    as_dict = compiled_json(loss={"a": "sparse_categorical_crossentropy", "b": keras.losses.CategoricalCrossentropy()},
                            loss_weights={"a": 1.0, "b": 0.5}, outputs=2)
    spec = spec_of(as_dict)
    assert spec.loss == {"a": "sparse_categorical_crossentropy", "b": "categorical_crossentropy"}
    assert spec.loss_weights == {"a": 1.0, "b": 0.5}
    vet_spec(spec, Settings())  # the weights name the model's outputs
    as_list = spec_of(compiled_json(loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[2.0, 0.25], outputs=2))
    assert as_list.loss == {"a": "sparse_categorical_crossentropy", "b": "mse"} and as_list.loss_weights == [2.0, 0.25]
    vet_spec(as_list, Settings())
    assert spec_of(compiled_json(loss_weights=[1.0])).loss_weights is None  # all 1: no weights
    with pytest.raises(ValidationError) as caught:  # filled fields pass the rules a job's own do
        spec_of(compiled_json(loss_weights=[1e7]))
    assert caught.value.errors()[0]["loc"] == ("loss_weights", "list[constrained-float]", 0)


def test_a_from_logits_loss_fills_loss_config_and_the_notes_name_its_settings() -> None:
    logits = compiled_json(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    spec = spec_of(logits)
    assert spec.loss == "sparse_categorical_crossentropy" and spec.loss_config == {"from_logits": True}
    assert "with {'from_logits': True}" in {n["code"]: n["message"] for n in spec.compiled_notes()}["compiled_loss_used"]
    assert spec_of(compiled_json()).loss_config is None  # at its defaults: nothing to carry
    smoothed = spec_of(compiled_json(loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1, axis=-1)))
    assert smoothed.loss_config == {"label_smoothing": 0.1}
    named = spec_of(logits, loss="sparse_categorical_crossentropy")  # the job wins: the model's settings unused
    assert named.loss_config is None and named.optimizers[0].name == "adam"
    replaced = {n["code"]: n["message"] for n in named.compiled_notes()}["compiled_loss_replaced"]
    assert "not the model's compiled loss (sparse_categorical_crossentropy with {'from_logits': True})" in replaced


def test_per_output_losses_carry_the_settings_of_the_outputs_that_have_some() -> None:
    as_dict = compiled_json(loss={"a": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "b": "mse"}, outputs=2)
    spec = spec_of(as_dict)
    assert spec.loss == {"a": "sparse_categorical_crossentropy", "b": "mse"}
    assert spec.loss_config == {"a": {"from_logits": True}}
    vet_spec(spec, Settings())
    as_list = spec_of(compiled_json(loss=["mse", keras.losses.BinaryCrossentropy(from_logits=True)], outputs=2))
    assert as_list.loss == {"a": "mse", "b": "binary_crossentropy"} and as_list.loss_config == {"b": {"from_logits": True}}


def test_a_setting_a_job_cannot_express_refuses_only_when_the_job_leaves_it_to_the_model() -> None:
    summed = compiled_json(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"))
    check_allowed(summarize(summed))  # safe: not a security matter
    with pytest.raises(ValidationError, match="reduction='sum'.*name the loss in the job") as caught:
        spec_of(summed)
    assert caught.value.errors()[0]["loc"] == ("loss",)
    named = spec_of(summed, loss="sparse_categorical_crossentropy")
    assert named.optimizers[0].name == "adam" and "compiled_loss_replaced" in codes(named)


@pytest.mark.parametrize("loss, config", [
    ("sparse_categorical_crossentropy", {"from_logits": True, "ignore_class": -1}),
    ("binary_focal_crossentropy", {"apply_class_balancing": True, "alpha": 0.5, "gamma": 1, "label_smoothing": 0.0}),
    ("dice", {"axis": None}),
    ({"a": "categorical_crossentropy", "b": "mse"}, {"a": {"from_logits": True, "axis": 1}}),
])
def test_loss_config_takes_the_classes_own_settings(loss: Any, config: dict[str, Any]) -> None:
    assert spec_of(compiled_json(), loss=loss, loss_config=config).loss_config == config


@pytest.mark.parametrize("loss, config, says", [
    ("sparse_categorical_crossentropy", {"reduction": "sum"}, "takes only from_logits, ignore_class, not 'reduction'"),
    ("sparse_categorical_crossentropy", {"label_smoothing": 0.1}, "not 'label_smoothing'"),
    ("mean_squared_error", {"from_logits": True}, "mean_squared_error takes no settings, not .from_logits. \\["),
    ("bce", {"from_logits": True}, "bce takes no settings.*full identifier.*binary_crossentropy"),
    ("categorical_crossentropy", {"from_logits": 1}, "from_logits is true or false, not 1"),
    ("categorical_crossentropy", {"label_smoothing": -0.5}, "label_smoothing is a number from 0 to 1e.06, not -0.5"),
    ("categorical_crossentropy", {"label_smoothing": "0.1"}, "label_smoothing is a number"),
    ("categorical_crossentropy", {"axis": 1.5}, "axis is an integer"),
    ("categorical_crossentropy", {"axis": None}, "axis is an integer of at most 1e.06 in size, not None"),
    ("sparse_categorical_crossentropy", {"ignore_class": 10**7}, "ignore_class is an integer"),
    ("sparse_categorical_crossentropy", {"from_logits": {"class_name": "Evil"}}, "not an object"),
    ("sparse_categorical_crossentropy", True, "valid dictionary"),
    ({"a": "sparse_categorical_crossentropy", "b": "mse"}, {"c": {"from_logits": True}}, r"names outputs \['c'\] that the loss"),
    ({"a": "sparse_categorical_crossentropy", "b": "mse"}, {"a": True}, r"loss_config\[a\] must be an object"),
])
def test_loss_config_refuses_what_the_class_does_not_take(loss: Any, config: Any, says: str) -> None:
    with pytest.raises(ValidationError, match=says) as caught:
        spec_of(compiled_json(), loss=loss, loss_config=config)
    assert caught.value.errors()[0]["loc"][0] == "loss_config"


def test_an_output_compiled_without_a_loss_needs_the_jobs_loss() -> None:
    model = compiled_json(loss={"a": "sparse_categorical_crossentropy", "b": None}, outputs=2)
    with pytest.raises(ValidationError, match=r"loss\[b\] is null"):
        spec_of(model)
    assert spec_of(model, loss={"a": "mse", "b": "mse"}).loss == {"a": "mse", "b": "mse"}


def test_the_job_wins_and_the_notes_say_so() -> None:
    model = compiled_json(keras.optimizers.SGD(momentum=0.9), loss="mse")
    spec = spec_of(model, optimizers=[{"name": "adam"}], loss="sparse_categorical_crossentropy", loss_weights=[2.0])
    assert [a.name for a in spec.optimizers] == ["adam"] and spec.loss == "sparse_categorical_crossentropy"
    assert spec.loss_weights == [2.0]
    messages = {n["code"]: n["message"] for n in spec.compiled_notes()}
    assert "not the model's compiled sgd" in messages["compiled_optimizer_replaced"]
    assert "not the model's compiled loss (mse)" in messages["compiled_loss_replaced"]
    mixed = spec_of(model, loss="mse")  # the optimizer from the model, the loss named (the same one)
    assert mixed.optimizers[0].params == {"momentum": 0.9, "nesterov": False}
    assert codes(mixed)[0] == "compiled_optimizer_used" and "compiled_loss_used" in codes(mixed)


def test_the_filled_spec_is_explicit_and_stable_when_stored_and_read_again() -> None:
    spec = spec_of(compiled_json(keras.optimizers.RMSprop(momentum=0.5), loss="mse", loss_weights=[3.0]))
    stored = json.loads(spec.model_dump_json())
    assert stored["optimizers"] == [{"name": "rmsprop", "label": None, "params": {
        "rho": 0.9, "momentum": 0.5, "epsilon": 1e-07, "centered": False}}]
    assert stored["loss"] == "mse" and stored["loss_weights"] == [3.0]
    again = JobSpec.model_validate(stored)
    assert again.model_dump() == spec.model_dump() and again.compiled_notes() == spec.compiled_notes()


def test_an_uncompiled_model_keeps_the_old_defaults() -> None:
    model = json.loads(keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]).to_json())
    spec = spec_of(model)
    assert [a.name for a in spec.optimizers] == ["adam"] and spec.loss == "sparse_categorical_crossentropy"
    assert spec.loss_weights is None and spec.compiled_notes() == []


def test_vetting_drops_the_compile_config_before_keras_sees_it() -> None:
    spec = spec_of(compiled_json(keras.optimizers.Adam(clipnorm=1.0)))
    assert "compile_config" not in vet_spec(spec, Settings())
