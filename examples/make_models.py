"""Regenerate the example model JSONs with real Keras (`python examples/make_models.py`).

- `mnist_convnet.json`: the tutorial's ConvNet for 28x28x1 MNIST images (batch 250, SGD vs Adam).
- `digits_mlp.json`: a small MLP for scikit-learn's 8x8 digits (`builtin:digits`), the offline demo.
- `digits_job.json`: a whole `POST /v1/jobs` body for the MLP, for `curl -d @examples/digits_job.json`.
"""

import json
from pathlib import Path

import keras
from keras import layers

HERE = Path(__file__).parent

convnet = keras.Sequential(
    [
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dense(256, activation="relu"),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ],
    name="tutorial_convnet",
)
mlp = keras.Sequential(
    [keras.Input(shape=(64,)), layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")],
    name="digits_mlp",
)


def write(name: str, obj: object) -> None:
    (HERE / name).write_text(json.dumps(obj, indent=1) + "\n")


write("mnist_convnet.json", json.loads(convnet.to_json()))
write("digits_mlp.json", json.loads(mlp.to_json()))
write(
    "digits_job.json",
    {
        "model": json.loads(mlp.to_json()),
        "dataset": {"uri": "builtin:digits", "normalize": True},
        "loss": "sparse_categorical_crossentropy",
        "optimizers": [{"name": "sgd", "label": "SGD optimizer"}, {"name": "adam", "label": "Adam optimizer"}],
        "sweep": {"start_lr": 1e-4, "end_lr": 10.0, "num_steps": 150, "batch_size": 64},
    },
)
