"""The loss x target-layout matrix of held-out scoring, shared by the TensorFlow test (in-process) and the
JAX one (`tests.worker.jax_process`): every loss in `LOSS_NAMES` with each target layout the range test
accepts for it (`worker.engine.targets.check_targets` passes), and several outputs with a loss each.

`score(case)` trains the tiny model one step the way the engine compiles it, then returns the engine's
held-out score and an independent one: each loss function called by hand on targets reshaped to their
output's shape (ids left as they are), averaged over rows and summed over outputs, which is what the
training path computes. CTC is not in the matrix: `check_targets` refuses every target layout a CTC model
has (label sequences are not of the output's shape), so the range test never scores one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrrt.spec import LOSS_NAMES

ROWS, VAL, FEATURES = 24, 8, 5
UNSCORED = frozenset({"ctc"})


@dataclass(frozen=True)
class Head:
    """One model output: its units and activation, and how its targets are made."""

    units: int
    activation: str | None
    targets: Callable[[np.random.Generator, int], np.ndarray]


def _binary_1d(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2, n).astype("float32")


def _binary_2d(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2, (n, 1)).astype("float32")


def _multilabel(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2, (n, 3)).astype("float32")


def _ids_1d(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 4, n)


def _ids_2d(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 4, (n, 1))


def _one_hot(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.eye(4, dtype="float32")[rng.integers(0, 4, n)]


def _float_1d(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.5, 2.0, n).astype("float32")  # positive: msle, poisson and mape are defined there


def _float_2d(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.5, 2.0, (n, 1)).astype("float32")


def _float_3d(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=(n, 3)).astype("float32")


LAYOUTS: dict[str, Head] = {
    "binary_1d": Head(1, "sigmoid", _binary_1d),  # Dense(1, sigmoid) with labels of shape (n,): issue 20's crash
    "binary_2d": Head(1, "sigmoid", _binary_2d),
    "multilabel": Head(3, "sigmoid", _multilabel),
    "ids_1d": Head(4, "softmax", _ids_1d),
    "ids_2d": Head(4, "softmax", _ids_2d),
    "one_hot": Head(4, "softmax", _one_hot),
    "float_1d": Head(1, "softplus", _float_1d),
    "float_2d": Head(1, "softplus", _float_2d),
    "float_vectors": Head(3, None, _float_3d),
}
PROBABILITY = ("binary_1d", "binary_2d", "multilabel")
REGRESSION = ("float_1d", "float_2d")
#: The layouts each loss is scored with: those its users give it and the range test accepts.
LOSS_LAYOUTS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(["binary_crossentropy", "bce", "binary_focal_crossentropy", "dice", "tversky"], PROBABILITY),
    **dict.fromkeys(["hinge", "squared_hinge", "circle"], ("binary_1d", "binary_2d")),
    "sparse_categorical_crossentropy": ("ids_1d", "ids_2d"),
    **dict.fromkeys(["categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge",
                     "kl_divergence", "kld"], ("one_hot",)),
    "cosine_similarity": ("float_vectors",),
    **dict.fromkeys(["huber", "log_cosh", "mean_absolute_error", "mae", "mean_absolute_percentage_error", "mape",
                     "mean_squared_error", "mse", "mean_squared_logarithmic_error", "msle", "poisson"], REGRESSION),
}
#: Several outputs with a loss each (listed in the model's output order), targets of mixed layouts.
SEVERAL: dict[str, tuple[tuple[str, str], ...]] = {
    "ids_1d+float_1d": (("sparse_categorical_crossentropy", "ids_1d"), ("mse", "float_1d")),
    "binary_1d+float_2d": (("binary_crossentropy", "binary_1d"), ("mae", "float_2d")),
    "one_hot+binary_2d+float_1d": (("categorical_crossentropy", "one_hot"), ("hinge", "binary_2d"),
                                   ("huber", "float_1d")),
}
CASES: dict[str, tuple[tuple[str, str], ...]] = {
    **{f"{loss}/{layout}": ((loss, layout),) for loss, layouts in sorted(LOSS_LAYOUTS.items()) for layout in layouts},
    **{f"several/{name}": heads for name, heads in SEVERAL.items()},
}
assert set(LOSS_LAYOUTS) == LOSS_NAMES - UNSCORED, sorted(LOSS_NAMES - UNSCORED ^ set(LOSS_LAYOUTS))


def score(case: str) -> tuple[float, float]:
    """(the engine's held-out score, the score computed by hand) of one case after one training step."""
    import keras

    from worker.engine.data import Prepared
    from worker.engine.models import output_specs
    from worker.engine.scoring import held_out_loss
    from worker.engine.targets import check_targets

    heads = CASES[case]
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    x = rng.normal(size=(ROWS + VAL, FEATURES)).astype("float32")
    inputs = keras.Input((FEATURES,), name="x")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = [keras.layers.Dense(LAYOUTS[layout].units, activation=LAYOUTS[layout].activation, name=f"out{i}")(hidden)
               for i, (_, layout) in enumerate(heads)]
    model = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0])
    ys = [LAYOUTS[layout].targets(rng, ROWS + VAL) for _, layout in heads]
    data = Prepared(x=[x[:ROWS]], y=[y[:ROWS] for y in ys], x_val=[x[ROWS:]], y_val=[y[ROWS:] for y in ys])
    names = [loss for loss, _ in heads]
    check_targets(data, output_specs(model), names)  # a layout the range test refuses has no place here
    losses = [keras.losses.get(name) for name in names]
    jit: bool | str = "auto" if keras.backend.backend() == "jax" else False  # as `sweep._compiled` compiles
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=losses[0] if len(losses) == 1 else losses, jit_compile=jit)
    model.fit(data.x[0], data.y[0] if len(ys) == 1 else data.y, batch_size=ROWS, epochs=1, verbose=0)
    ours = held_out_loss(model, data)
    predictions = model.predict_on_batch(data.x_val[0])
    predictions = predictions if isinstance(predictions, (list, tuple)) else [predictions]
    by_hand = 0.0
    for loss, y, p in zip(losses, data.y_val, predictions):
        target = y.reshape(p.shape) if y.size == p.size else y  # class ids stay ids
        by_hand += float(np.mean(keras.ops.convert_to_numpy(loss(keras.ops.convert_to_tensor(target), p))))
    return ours, by_hand


def score_all() -> dict[str, Any]:
    """Every case's scores, or its error as text (for the JAX process, which reports them all at once)."""
    results: dict[str, Any] = {}
    for case in CASES:
        try:
            results[case] = list(score(case))
        except Exception as exc:  # reported per case, so one failure does not hide the others
            results[case] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    return results


def binary_classifier_job(**sweep: Any) -> tuple[dict[str, Any], Any]:
    """Issue 20's job: Dense(1, sigmoid), labels of shape (n,), binary_crossentropy, held-out rows; the
    spec as JSON and its arrays (`Arrays`), with `sweep` added to a short sweep."""
    import json

    import keras

    from worker.engine.data import Arrays

    rng = np.random.default_rng(3)
    x = rng.normal(size=(160, FEATURES)).astype("float32")
    y = (x @ rng.normal(size=FEATURES) > 0).astype("float32")  # shape (160,)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    spec = {"model": json.loads(model.to_json()), "dataset": {"uri": "builtin:digits", "validation_split": 0.25},
            "loss": "binary_crossentropy", "optimizers": [{"name": "adam"}],
            "sweep": {"start_lr": 1e-4, "end_lr": 10.0, "num_steps": 60, "batch_size": 16, **sweep}}
    return spec, Arrays(x, y)


def run_binary_classifier_job(**sweep: Any) -> dict[str, Any]:
    """`binary_classifier_job` run by the engine on this process's backend; the result's first arm."""
    import tempfile
    from pathlib import Path

    from lrrt.settings import Settings
    from lrrt.spec import JobSpec
    from worker.engine.sweep import run_sweep

    spec, arrays = binary_classifier_job(**sweep)
    with tempfile.TemporaryDirectory() as root:
        result = run_sweep(JobSpec.model_validate(spec), data_root=Path(root), caps=Settings(data_root=Path(root)),
                           data=arrays)
    return dict(result["arms"][0])
