"""How close the memory guard's estimate (`lrrt.vetting.memory`) comes to what one training step uses.

For each representative model, in a fresh process (so no model's memory or traced graph is left over
for the next): build the model on the CPU, read the guard's estimate from its JSON (Adam, the bench's
batch size), then run one `train_on_batch` and take the process's peak resident memory (ru_maxrss)
minus its resident memory just before the model was built. That delta holds everything the step added:
weights, gradients, Adam's slots, activations, and the backend's own fixed cost of tracing and
compiling a train step. The last is measured on its own with a one-weight model (`tiny`) and shown
subtracted too, since it does not grow with the model and the estimate does not model it.

    python bench/memory_estimate.py [--backend tensorflow|jax]

Prints a Markdown table (the one in docs/design.md, "Memory estimate") and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: name: (batch size, what it is)
MODELS: dict[str, tuple[int, str]] = {
    "tiny": (8, "Dense(1) on 4 features: the backend's fixed cost of a first step"),
    "mlp": (256, "MLP 784-512-512-10"),
    "convnet": (64, "ConvNet 64x64x3, 3 conv layers"),
    "mobilenetv2_96": (32, "keras.applications.MobileNetV2 at 96x96, 10 classes"),
    "text_lstm": (64, "Embedding(20000, 128), LSTM(256) x2 over 200 tokens"),
    "upsampling": (8, "issue 20's bomb at 1/3 scale: UpSampling2D(size=100) of 8x8x1, Conv2D(4, 3)"),
}


def build(name: str) -> Any:
    import keras

    layers = keras.layers
    if name == "tiny":
        return keras.Sequential([keras.Input((4,)), layers.Dense(1)])
    if name == "mlp":
        return keras.Sequential([keras.Input((784,)), layers.Dense(512, activation="relu"),
                                 layers.Dense(512, activation="relu"), layers.Dense(10, activation="softmax")])
    if name == "convnet":
        return keras.Sequential([keras.Input((64, 64, 3)), layers.Conv2D(32, 3, activation="relu"),
                                 layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
                                 layers.Conv2D(128, 3, activation="relu"), layers.GlobalAveragePooling2D(),
                                 layers.Dense(10, activation="softmax")])
    if name == "mobilenetv2_96":
        return keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10)
    if name == "text_lstm":
        return keras.Sequential([keras.Input((200,), dtype="int32"), layers.Embedding(20000, 128),
                                 layers.LSTM(256, return_sequences=True), layers.LSTM(256),
                                 layers.Dense(10, activation="softmax")])
    if name == "upsampling":
        return keras.Sequential([keras.Input((64,)), layers.Reshape((8, 8, 1)), layers.UpSampling2D(size=100),
                                 layers.Conv2D(4, 3), layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax")])
    raise ValueError(name)


def measure(name: str) -> dict[str, Any]:
    """One model, in this process: the step's peak RSS delta and the estimate's parts."""
    import numpy as np
    import psutil

    from lrrt.vetting.estimate import estimate
    from lrrt.vetting.memory import step_memory

    batch = MODELS[name][0]
    before = psutil.Process().memory_info().rss
    model = build(name)
    shape = model.inputs[0].shape[1:]
    integer = "int" in str(model.inputs[0].dtype)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20000, (batch, *shape)) if integer else rng.random((batch, *shape), dtype="float32")
    y = rng.integers(0, model.outputs[0].shape[-1], (batch,))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    footprint = estimate(json.loads(model.to_json()))
    assert footprint is not None and footprint.complete, footprint
    memory = step_memory(footprint, 0, [("adam", {})], batch)
    model.train_on_batch(x, y)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return {"model": name, "batch_size": batch, "params": footprint.params, "activations_per_sample": footprint.activations,
            "measured_bytes": peak - before, "estimate_bytes": memory.total, "estimate_activation_bytes": memory.activations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child's role: measure one model, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    env = {**os.environ, "KERAS_BACKEND": args.backend, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = []
    for name in MODELS:
        out = subprocess.run([sys.executable, __file__, "--backend", args.backend, "--one", name], env=env, cwd=REPO,
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    fixed = rows[0]["measured_bytes"]
    mib = 1024 ** 2
    print(f"Backend {args.backend}, CPU; fixed cost of a first step (`tiny`): {fixed / mib:.0f} MiB\n")
    print("| model | batch | params | estimate (MiB) | measured peak delta (MiB) | measured / estimate | "
          "measured - fixed (MiB) | (measured - fixed) / estimate |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows[1:]:
        measured, est = row["measured_bytes"], row["estimate_bytes"]
        row["ratio"] = round(measured / est, 2)
        row["ratio_less_fixed"] = round((measured - fixed) / est, 2)
        print(f"| {MODELS[row['model']][1]} | {row['batch_size']} | {row['params']:,} | {est / mib:.0f} | "
              f"{measured / mib:.0f} | {row['ratio']} | {(measured - fixed) / mib:.0f} | {row['ratio_less_fixed']} |")
    print(json.dumps({"backend": args.backend, "fixed_bytes": fixed, "rows": rows[1:]}))


if __name__ == "__main__":
    main()
