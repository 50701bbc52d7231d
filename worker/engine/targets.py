"""Do the targets fit the model's outputs under the chosen loss? Checked before training, because
Keras's own answer to labels out of range is a TensorFlow graph trace (or, on some backends, silent
garbage) rather than a sentence that says what to change.

NumPy only, on the prepared arrays and the built model's output shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lrrt.problems import DatasetError
from lrrt.vetting.shapes import known_dims
from worker.engine.data import Prepared, TensorSpec

SPARSE = frozenset({"sparse_categorical_crossentropy"})
ONE_HOT = frozenset({"categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge"})
PROBABILITY = frozenset({"binary_crossentropy", "bce", "binary_focal_crossentropy"})


def check_targets(data: Prepared, outputs: Sequence[TensorSpec], losses: Sequence[str]) -> None:
    """Raise DatasetError naming the expected range or shape when a target array cannot train its output."""
    for output, loss, y_train, y_val in zip(outputs, losses, data.y, data.y_val):
        for y, part in ((y_train, "y"), (y_val, "y_val")):
            if len(y):
                _check(y, output, loss, part if len(outputs) == 1 else f"{part}_{output.name}")


def _check(y: np.ndarray, output: TensorSpec, loss: str, name: str) -> None:
    out = output.shape[1:]
    units = out[-1] if out else 1
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise DatasetError(f"{name} holds NaN or infinite values; remove or fix those rows", array=name)
    if loss in SPARSE:
        if units is None:
            return
        if not np.array_equal(y, np.round(y)):
            raise DatasetError(f"{loss} needs integer class ids in {name}, but it holds fractional values; for one-hot "
                               "or probability targets use categorical_crossentropy", array=name)
        low, high = (int(y.min()), int(y.max())) if y.size else (0, 0)
        if low < 0 or high >= units:
            raise DatasetError(f"{name} holds class ids from {low} to {high}, but the model's output {output.name!r} has "
                               f"{units} units, so {loss} needs ids in 0..{units - 1}; give the last layer {high + 1} "
                               "units or relabel the targets", array=name, expected_range=[0, units - 1],
                               found_range=[low, high])
        rows = known_dims(out[:-1])
        if rows is not None and math.prod(y.shape[1:]) != math.prod(rows):
            raise DatasetError(f"{name} rows have shape {list(y.shape[1:])}; {loss} wants one class id per output row "
                               f"(the model's output {output.name!r} is {list(out)})", array=name)
        return
    known = known_dims(out)
    if known is not None and math.prod(y.shape[1:]) != math.prod(known):
        hint = (" (one-hot targets: convert class ids with keras.utils.to_categorical, or use "
                "sparse_categorical_crossentropy)" if loss in ONE_HOT else "")
        raise DatasetError(f"{name} rows have shape {list(y.shape[1:])} but the model's output {output.name!r} is "
                           f"{list(out)}; {loss} needs targets of the output's shape{hint}", array=name,
                           data_shape=list(y.shape[1:]), model_shape=list(out))
    if loss in ONE_HOT | PROBABILITY and y.size and (float(y.min()) < 0 or float(y.max()) > 1):
        raise DatasetError(f"{loss} needs targets in [0, 1] in {name}, but they range from {float(y.min()):g} to "
                           f"{float(y.max()):g}; for class ids use sparse_categorical_crossentropy", array=name,
                           expected_range=[0, 1])
