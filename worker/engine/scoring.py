"""The held-out score of a model's current weights: what `sweep.confirm` ranks candidates by and what
`evaluate_on: "validation"` records between chunks.

It is the data loss of the compiled model, computed by the loss object `fit` computes it with
(`model.compute_loss` without the regularization terms, i.e. Keras's `CompileLoss`), not by calling the
loss functions by hand. The training path aligns targets to outputs first (a `(n,)` label array against a
`(n, 1)` sigmoid output is expanded, per output of a several-output model, sparse ids kept as ids) and
then applies each loss's reduction; a hand call did neither, and `binary_crossentropy` refused
`target.shape=(n,)` against `output.shape=(n, 1)`: the most common binary classifier failed its job after
its range test. Whatever targets `fit` accepts, the score accepts and reduces the same way.

The recorder (`model._loss_tracker`, `worker.engine.recorder`) is not touched: `CompileLoss` updates only
its own per-output means, which feed Keras's logs and nothing of ours.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from lrrt.problems import EngineError
from worker.engine.data import Prepared


def held_out_loss(model: keras.Model | None, data: Prepared) -> float:
    """The data loss (no regularization terms) of `model`'s current weights on the fixed held-out rows,
    summed over outputs as training sums it. `model` is compiled and has run at least one `fit` step."""
    if model is None:
        raise EngineError("held-out scoring needs the model of a run, and no run has started")
    compiled_loss = getattr(model, "_compile_loss", None)  # Keras's private: what `compute_loss` calls
    if compiled_loss is None:
        raise EngineError(f"this Keras version ({keras.__version__}) has no compiled loss to score held-out rows with")
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()  # JAX keeps the training state outside the variables during fit
    y_pred = model.predict_on_batch(_single_or_list(data.x_val))
    value = compiled_loss(_single_or_list(data.y_val), y_pred)
    return float(np.asarray(keras.ops.convert_to_numpy(value)))


def _single_or_list(parts: list[Any]) -> Any:
    """One array as itself, several as a list: how the engine hands inputs and targets to `fit`."""
    return parts[0] if len(parts) == 1 else list(parts)
