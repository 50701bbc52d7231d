"""Start a job from the user's weights: resolve the reference, inspect the file, check it fits, load it.

The file is vetted (`lrrt.vetting.weights.inspect_weights`) before Keras opens it, and only its
resolved local path is handed to `load_weights`, so Keras never follows a sharded `.weights.json`,
never fetches a `scheme://` path and never reads anything but numeric datasets. Whether the weights
fit is decided by comparing variable paths and shapes with what Keras itself writes for the freshly
built model (`save_weights` into a scratch file, inspected the same way), so a mismatch lists every
variable, expected vs found, instead of surfacing as Keras's first ValueError or a silent partial load.

The loaded model is the first build of `worker.engine.sweep._Setup`; its variables become the start
of every arm, seed and confirm candidate. Layers the JSON marks `trainable: false` keep their flag (and
BatchNormalization in them runs in inference mode, as in Keras's `fit`): loading changes values only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras

from lrrt.problems import WeightsError
from lrrt.settings import Settings
from lrrt.vetting.weights import at_weights, check_fit, inspect_weights, model_variables, resolve, sha256_file


def load_into(model: keras.Model, reference: str, data_root: Path, caps: Settings) -> dict[str, str]:
    """Load the weights `reference` names into `model`; return the result's `engine.weights`
    (`{"uri", "sha256"}`). Raises WeightsError (`weights-mismatch` when they do not fit)."""
    try:
        path = resolve(data_root, reference)
        found = model_variables(inspect_weights(path, caps.max_weights_bytes))
        check_fit(expected_variables(model), found)
        try:
            model.load_weights(str(path))
        except Exception as exc:  # a layout check_fit passed but Keras still refused: say so, no trace
            raise WeightsError(f"Keras could not load the weights: {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:300]}") from None
    except WeightsError as exc:
        raise at_weights(exc) from None
    return {"uri": reference, "sha256": sha256_file(path)}


def expected_variables(model: keras.Model) -> dict[str, list[int]]:
    """Each variable's path and shape as Keras's `save_weights` lays them out for this model."""
    with tempfile.TemporaryDirectory(prefix="lrrt-weights-") as scratch:
        path = Path(scratch) / "expected.weights.h5"
        model.save_weights(str(path))
        return model_variables(inspect_weights(path, max_bytes=path.stat().st_size))
