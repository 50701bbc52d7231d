"""The quality bench's tasks are valid API inputs with honest splits, and its one-cycle grid has the
engine's shape. Small: one Keras import, no training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.quality_tasks import (
    ADAM,
    QualityTask,
    TaskData,
    breast_cancer_data,
    build_tasks,
    diabetes_data,
    digits_data,
    friedman_data,
    ill_conditioned_data,
)


def _task(data: TaskData, loss: str) -> QualityTask:
    return QualityTask("t", {}, loss, data, (ADAM,), epochs=1, batch_size=8)


def test_digits_split_is_stratified_disjoint_and_scaled() -> None:
    data = digits_data(image=True)
    assert data.x.shape[1:] == (8, 8, 1) and data.x.dtype == np.float32
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0
    assert len(data.x_val) == pytest.approx(0.2 * (len(data.x) + len(data.x_val)), abs=1)
    train_rows = {row.tobytes() for row in data.x}
    assert sum(row.tobytes() in train_rows for row in data.x_val) < 0.05 * len(data.x_val)  # digits has a few duplicates
    assert set(np.unique(data.y_val)) == set(range(10))


def test_breast_cancer_is_a_few_hundred_standardized_rows_with_both_classes_held_out() -> None:
    data = breast_cancer_data()
    assert len(data.x) == 455 and data.x.shape[1] == 30 and data.x.dtype == np.float32
    assert abs(float(np.concatenate([data.x, data.x_val]).mean())) < 1e-3
    assert set(np.unique(data.y_val)) == {0, 1}


def test_budget_steps_count_the_last_short_batch() -> None:
    data = TaskData(np.zeros((100, 1)), np.zeros(100), np.zeros((10, 1)), np.zeros(10))
    assert QualityTask("t", {}, "mean_squared_error", data, (ADAM,), epochs=3, batch_size=32).budget_steps == 10


@pytest.mark.parametrize("make", [diabetes_data, friedman_data, ill_conditioned_data])
def test_regression_targets_are_standardized_columns(make) -> None:
    data = make()
    y = np.concatenate([data.y, data.y_val])
    assert data.y.shape == (len(data.x), 1)
    assert abs(float(y.mean())) < 1e-5 and float(y.std()) == pytest.approx(1.0, abs=1e-5)


def test_ill_conditioned_features_span_three_decades() -> None:
    scales = ill_conditioned_data().x.std(axis=0)
    assert math.log10(scales.max() / scales.min()) == pytest.approx(3.0, abs=0.3)


def test_baseline_loss_is_the_prior_predictor() -> None:
    balanced = TaskData(np.zeros((20, 1)), np.arange(20) % 10, np.zeros((10, 1)), np.arange(10))
    assert _task(balanced, "sparse_categorical_crossentropy").baseline_loss() == pytest.approx(math.log(10))
    regression = TaskData(np.zeros((2, 1)), np.array([[1.0], [3.0]]), np.zeros((2, 1)), np.array([[2.0], [4.0]]))
    assert _task(regression, "mean_squared_error").baseline_loss() == pytest.approx((0 + 4) / 2)


def test_every_task_is_an_allowed_model_that_fits_its_data() -> None:
    from lrrt.settings import Settings
    from lrrt.vetting.vet import vet_model_json
    from worker.engine.models import build_model, input_specs

    tasks = build_tasks(quick=True)
    assert {t.name for t in tasks} >= {"digits_mlp", "digits_convnet", "friedman_mlp", "illcond_mlp"}
    assert any(len(t.arms) > 1 for t in tasks)  # at least one Adam-vs-SGD task
    for task in tasks:
        model = build_model(vet_model_json(task.model, Settings()), Settings())
        shape = input_specs(model)[0].shape
        assert tuple(shape[1:]) == task.data.x.shape[1:], task.name
        out = model(task.data.x_val[:2])
        assert out.shape[-1] == (int(task.data.y.max()) + 1 if task.classification else 1), task.name


def test_unknown_task_names_are_an_error() -> None:
    with pytest.raises(ValueError, match="nope"):
        build_tasks(only={"nope"})


def test_one_cycle_plan_matches_the_engine_recommendation() -> None:
    import keras

    from bench.quality_train import LRPlan, VariableSchedule
    from lrrt.suggestions import ONE_CYCLE_DIV, ONE_CYCLE_FINAL_DIV

    schedule = VariableSchedule()
    schedule.set(LRPlan("one_cycle", 0.5), total_steps=100)  # warm-up: 30 steps
    lr = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 30, 99)]
    assert lr[0] == pytest.approx(0.5 / ONE_CYCLE_DIV, rel=1e-5)
    assert lr[1] == pytest.approx(0.5, rel=1e-5)
    assert lr[2] == pytest.approx(0.5 / ONE_CYCLE_DIV / ONE_CYCLE_FINAL_DIV, rel=1e-2)
    schedule.set(LRPlan("one_cycle", 0.5, start=0.125), total_steps=100)
    assert float(keras.ops.convert_to_numpy(schedule(0))) == pytest.approx(0.125, rel=1e-5)
    schedule.set(LRPlan("constant", 0.01), total_steps=100)
    assert {round(float(keras.ops.convert_to_numpy(schedule(s))), 6) for s in (0, 50, 99)} == {0.01}
