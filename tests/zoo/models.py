"""The models users bring, built in the test process: every `keras.applications` architecture at the
smallest input it allows (weights=None: nothing is downloaded), and hand-made Functional models of the
kinds the catalogue lacks (text, attention with a residual `x + attn(x)`, several inputs).
"""

from __future__ import annotations

import json
import math
from typing import Any

#: The smallest square RGB input each architecture accepts with weights=None (Keras raises below it).
SMALLEST_INPUT = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}


def application_names() -> list[str]:
    import keras

    return sorted(name for name in dir(keras.applications) if name[0].isupper())


def application(name: str) -> Any:
    import keras

    size = SMALLEST_INPUT.get(name, 32)
    return getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=4)


def text_lstm(vocabulary: int = 50, length: int = 12) -> Any:
    """Embedding with a mask, LSTM, softmax: a sentiment-style text classifier."""
    import keras

    tokens = keras.Input((length,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(vocabulary, 8, mask_zero=True)(tokens)
    h = keras.layers.LSTM(8)(h)
    return keras.Model(tokens, keras.layers.Dense(3, activation="softmax")(h))


def transformer_block(vocabulary: int = 50, length: int = 12) -> Any:
    """One encoder block: MultiHeadAttention with `x + attn(x)`, LayerNormalization, an MLP with
    `keras.ops.gelu`, pooling: operation nodes and a shared residual path."""
    import keras

    tokens = keras.Input((length,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocabulary, 16)(tokens)
    attn = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    x = keras.layers.LayerNormalization()(x + attn)
    h = keras.ops.gelu(keras.layers.Dense(32)(x))
    x = keras.layers.LayerNormalization()(x + keras.layers.Dense(16)(h))
    x = keras.ops.mean(x, axis=1)
    return keras.Model(tokens, keras.layers.Dense(2, activation="softmax")(x))


def two_inputs() -> Any:
    """Numbers and a category id, concatenated: the `x_<input name>` dataset form."""
    import keras

    numbers = keras.Input((6,), name="numbers")
    category = keras.Input((1,), dtype="int32", name="category")
    c = keras.layers.Flatten()(keras.layers.Embedding(5, 3)(category))
    shared = keras.layers.Dense(8, activation="relu")
    h = keras.layers.Concatenate()([shared(numbers), c])
    return keras.Model([numbers, category], keras.layers.Dense(3, activation="softmax", name="label")(h))


def two_outputs() -> Any:
    """A class and a regression head, with a loss object keyed by output name."""
    import keras

    x = keras.Input((6,), name="features")
    h = keras.layers.Dense(8, activation="relu")(x)
    return keras.Model(x, [keras.layers.Dense(3, activation="softmax", name="kind")(h),
                           keras.layers.Dense(1, name="size")(h)])


def augmented() -> Any:
    """Issue 20's plain Sequential: augmentation and preprocessing layers in the model (which reach for
    TensorFlow inside Keras, even on JAX), a separable convolution, group normalization."""
    import keras

    layers = keras.layers
    return keras.Sequential([keras.Input((32, 32, 3)), layers.Rescaling(1 / 255.0), layers.RandomFlip("horizontal"),
                             layers.RandomRotation(0.1), layers.SeparableConv2D(8, 3, activation="relu"),
                             layers.GroupNormalization(groups=4), layers.GlobalAveragePooling2D(),
                             layers.Dense(4, activation="softmax")])


def as_json(model: Any) -> dict[str, Any]:
    return json.loads(model.to_json())


def keras_activations(model: Any) -> int:
    """Elements per sample of every layer call's output as Keras builds the model (nested models walked)."""
    import keras

    total = 0
    for op in model.layers if isinstance(model, keras.Sequential) else model.operations:
        if isinstance(op, keras.Model):
            total += keras_activations(op)
        elif not isinstance(op, keras.layers.InputLayer):
            outputs = op.output if isinstance(op.output, (list, tuple)) else [op.output]
            total += sum(math.prod(d or 1 for d in o.shape[1:]) for o in outputs)
    return total
