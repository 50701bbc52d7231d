"""A JAX worker runs without TensorFlow, and every layer Keras offers still works there."""

from __future__ import annotations

import numpy as np

from tests.worker.jax_process import run_on_jax


def test_preprocessing_and_augmentation_layers_train_on_a_jax_worker() -> None:
    """The layers that reach for TensorFlow inside Keras (`Rescaling`, `Normalization`, `Random*`,
    what MobileNetV3, EfficientNet and ConvNeXt are built with) build and train where TensorFlow is
    blocked, and TensorFlow stays unloaded (the block's memory saving, docs/design.md). Under the old
    block (`sys.modules["tensorflow"] = None`) this job failed with "This requires the tensorflow module"."""
    result = run_on_jax("""
        import numpy as np
        from lrrt.client.local import lr_find
        L = keras.layers
        model = keras.Sequential([keras.Input((8, 8, 3)), L.Rescaling(1 / 255.0), L.Normalization(mean=0.5, variance=0.25),
                                  L.RandomFlip("horizontal"), L.RandomRotation(0.1), L.SeparableConv2D(4, 3, activation="relu"),
                                  L.GroupNormalization(groups=2), L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")])
        rng = np.random.default_rng(0)
        x, y = rng.random((32, 8, 8, 3), dtype=np.float32) * 255, rng.integers(0, 3, 32)
        found = lr_find(model, x, y, loss="sparse_categorical_crossentropy", num_steps=4, batch_size=8, progress=False)
        try:
            import tensorflow  # noqa: F401
            imported = True
        except ModuleNotFoundError:
            imported = False
        report({"losses": found.arms[0]["losses"], "backend": found.data["engine"]["backend"], "imported": imported,
                "loaded": "tensorflow" in sys.modules})
    """)
    assert result["backend"] == "jax"
    assert len(result["losses"]) == 4 and all(np.isfinite(result["losses"])), result["losses"]
    assert result["imported"] is False and result["loaded"] is False
