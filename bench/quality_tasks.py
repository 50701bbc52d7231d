"""The small tasks the recommendation-quality bench measures, each one model + data + optimizer arms.

Chosen to run on 2 CPU cores in seconds per training run, yet to disagree about the best learning
rate: a classifier MLP and ConvNet (cross-entropy), a small real regression (MSE, overfits fast, so
the training-loss curve of the range test is not the whole story), an ill-conditioned regression
where Adam's per-parameter scaling and SGD with momentum want learning rates decades apart (and
Adam trains far better: the best-arm check), and two cases built to defeat a training-loss range
test: a wide MLP on a few hundred rows (overfitting: the training loss keeps falling at LRs whose
validation loss is bad) and a long budget (many times the sweep's steps).

Every split is fixed (seed 0) so that seeds vary only initial weights and batch order, which is what
a user re-running the range test sees. The range test gets the same arrays, with `x_val`/`y_val` as the
source's own held-out split, so it and the ground-truth training use exactly the same rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Set
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_friedman1
from sklearn.model_selection import train_test_split

from lrrt.spec import OptimizerArm

ADAM = OptimizerArm(name="adam", label="adam")
SGD_MOMENTUM = OptimizerArm(name="sgd", label="sgd_m0.9", params={"momentum": 0.9})
SGD = OptimizerArm(name="sgd", label="sgd")


@dataclass(frozen=True, eq=False)
class TaskData:
    """Train and validation arrays; validation rows are never trained on, by the sweep or the grid."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@dataclass(frozen=True, eq=False)
class QualityTask:
    """One model + data; every arm gets its own ground-truth grid and its own range test."""

    name: str
    model: dict[str, Any]  # Keras 3 `model.to_json()`, as the API receives it
    loss: str
    data: TaskData
    arms: tuple[OptimizerArm, ...]
    epochs: int  # training budget of every ground-truth and rule run
    batch_size: int
    notes: str = ""

    @property
    def classification(self) -> bool:
        return "categorical" in self.loss

    @property
    def budget_steps(self) -> int:
        """Steps of one ground-truth training run (the budget a user would train for; the last batch may be short)."""
        return math.ceil(self.epochs * len(self.data.x) / self.batch_size)

    def baseline_loss(self) -> float:
        """Validation loss of predicting the training prior (class frequencies, or the mean target).

        A run that ends worse than this learned nothing; the bench caps scores here so that one
        divergent run costs "no training at all" instead of dominating the mean with 1e30.
        """
        if self.classification:
            counts = np.bincount(self.data.y.astype(int), minlength=int(self.data.y_val.max()) + 1)
            prior = np.clip(counts / counts.sum(), 1e-7, 1.0)
            return float(-np.mean(np.log(prior[self.data.y_val.astype(int)])))
        return float(np.mean((self.data.y_val - self.data.y.mean()) ** 2))


def _model_json(layers: list[Any]) -> dict[str, Any]:
    """Build a Sequential with Keras and return its JSON: the exact object a client would POST."""
    import keras  # deferred: the pure-NumPy regret arithmetic must not pay for a Keras import

    return json.loads(keras.Sequential(layers).to_json())


def _split(x: np.ndarray, y: np.ndarray, *, stratify: bool) -> TaskData:
    x_tr, x_val, y_tr, y_val = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y if stratify else None
    )
    return TaskData(x_tr, y_tr, x_val, y_val)


def _regression_split(x: np.ndarray, y: np.ndarray) -> TaskData:
    """Float32 split with the target standardized, so MSE regrets compare across regression tasks."""
    y = (y - y.mean()) / y.std()
    return _split(x.astype("float32"), y.astype("float32").reshape(-1, 1), stratify=False)


def digits_data(*, image: bool = False) -> TaskData:
    """sklearn's bundled 8x8 digits, pixels 0..16 scaled to [0, 1]; `image` shapes them 8x8x1."""
    bunch = load_digits()
    x = (bunch.data / 16.0).astype("float32")
    if image:
        x = x.reshape(-1, 8, 8, 1)
    return _split(x, bunch.target.astype("int32"), stratify=True)


def diabetes_data() -> TaskData:
    """sklearn's bundled diabetes regression (442 rows), features and target standardized."""
    bunch = load_diabetes()
    x = (bunch.data - bunch.data.mean(0)) / bunch.data.std(0)
    return _regression_split(x, bunch.target)


def breast_cancer_data() -> TaskData:
    """sklearn's bundled breast-cancer diagnosis (569 rows, 30 features, 2 classes), features standardized."""
    bunch = load_breast_cancer()
    x = (bunch.data - bunch.data.mean(0)) / bunch.data.std(0)
    return _split(x.astype("float32"), bunch.target.astype("int32"), stratify=True)


def friedman_data(n: int = 2000) -> TaskData:
    """sklearn's Friedman #1 generator: 10 uniform features, 5 of them in a nonlinear target, noise 1."""
    x, y = make_friedman1(n_samples=n, noise=1.0, random_state=0)
    return _regression_split(x, y)


def ill_conditioned_data(n: int = 1200, features: int = 16, seed: int = 0) -> TaskData:
    """Nonlinear regression whose feature scales span three decades.

    SGD's stable learning rate is set by the largest scale, so it crawls along the small ones; Adam
    rescales per parameter. The two optimizers' best learning rates and best losses therefore differ,
    which is the case where picking one rule for every optimizer is most likely to fail.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, features))
    w = rng.standard_normal(features)
    y = np.tanh(z @ w / np.sqrt(features)) + 0.3 * np.sin(z[:, 0] * z[:, 1]) + 0.05 * rng.standard_normal(n)
    return _regression_split(z * np.logspace(-1.5, 1.5, features), y)


def _mlp(inputs: int, outputs: int, activation: str | None, hidden: tuple[int, ...] = (64, 64)) -> dict[str, Any]:
    import keras

    return _model_json(
        [keras.Input((inputs,))]
        + [keras.layers.Dense(units, activation="relu") for units in hidden]
        + [keras.layers.Dense(outputs, activation=activation)]
    )


def _digits_convnet() -> dict[str, Any]:
    import keras

    return _model_json(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def _digits_bn_mlp() -> dict[str, Any]:
    """64-64-10 MLP with BatchNormalization after each hidden Dense: normalized activations let plain SGD
    train at LRs around 1, far above where a range test's curve starts to turn."""
    import keras

    hidden = [layer for _ in range(2) for layer in (keras.layers.Dense(64, use_bias=False), keras.layers.BatchNormalization(),
                                                   keras.layers.Activation("relu"))]
    return _model_json([keras.Input((64,)), *hidden, keras.layers.Dense(10, activation="softmax")])


def build_tasks(*, quick: bool = False, only: Set[str] | None = None) -> list[QualityTask]:
    """The bench's tasks; `quick` halves every training budget (which moves the best LR up a little)."""
    scale = 1 if quick else 2
    ce, mse = "sparse_categorical_crossentropy", "mean_squared_error"
    both = (ADAM, SGD_MOMENTUM)
    makers = {
        "digits_mlp": lambda: QualityTask(
            "digits_mlp", _mlp(64, 10, "softmax"), ce, digits_data(), both, 5 * scale, 64,
            notes="64-64-10 MLP, sklearn 8x8 digits scaled to [0, 1]",
        ),
        "digits_convnet": lambda: QualityTask(
            "digits_convnet", _digits_convnet(), ce, digits_data(image=True), (ADAM,), 5 * scale, 64,
            notes="2-conv ConvNet on the digits as 8x8x1 images",
        ),
        "digits_convnet_sgd": lambda: QualityTask(
            "digits_convnet_sgd", _digits_convnet(), ce, digits_data(image=True), (SGD,), 5 * scale, 64,
            notes="the digits ConvNet with plain SGD (issue 24): its best constant LR lies above the range test's pick",
        ),
        "digits_bn_sgd": lambda: QualityTask(
            "digits_bn_sgd", _digits_bn_mlp(), ce, digits_data(), (SGD,), 5 * scale, 64,
            notes="64-64-10 MLP with BatchNormalization, plain SGD (issue 24): a high-LR optimum",
        ),
        "friedman_mlp": lambda: QualityTask(
            "friedman_mlp", _mlp(10, 1, None), mse, friedman_data(), (ADAM,), 5 * scale, 32,
            notes="64-64-1 MLP, sklearn make_friedman1 (1600 train rows, noise 1), standardized target",
        ),
        "illcond_mlp": lambda: QualityTask(
            "illcond_mlp", _mlp(16, 1, None), mse, ill_conditioned_data(), both, 10 * scale, 32,
            notes="64-64-1 MLP, synthetic regression with feature scales 10^-1.5..10^1.5 (Adam vs SGD)",
        ),
        "illcond_long": lambda: QualityTask(
            "illcond_long", _mlp(16, 1, None), mse, ill_conditioned_data(), both, 30 * scale, 32,
            notes="long budget: illcond_mlp trained 3x as long (1800 steps, 9x the sweep): SGD's held-out loss "
            "degrades over the budget at LRs that are fine for 200 steps, and Adam's best LR moves up",
        ),
        "diabetes_mlp": lambda: QualityTask(
            "diabetes_mlp", _mlp(10, 1, None, hidden=(16,)), mse, diabetes_data(), (ADAM,), 20 * scale, 32,
            notes="16-1 MLP, sklearn diabetes (353 train rows): overfits, so the val optimum is flat",
        ),
        "cancer_wide_mlp": lambda: QualityTask(
            "cancer_wide_mlp", _mlp(30, 2, "softmax", hidden=(256, 256)), ce, breast_cancer_data(), (ADAM,),
            50 * scale, 32,
            notes="overfitting: 256-256-2 MLP (74k weights) on sklearn breast cancer (455 train rows); the training "
            "loss falls at every LR the range test likes while the held-out loss is lowest decades below",
        ),
    }
    unknown = (only or set()) - makers.keys()
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}: choose from {sorted(makers)}")
    return [make() for name, make in makers.items() if only is None or name in only]
