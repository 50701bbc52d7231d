"""Engine benchmark: the same steps four ways, interleaved in one process, on the same model and data.

1. `engine`   - `run_sweep` (LR schedule + per-step loss ring on the device, `steps_per_execution` chunks);
2. `fit`      - plain `model.fit`, one step per call, same LR schedule;
3. `floor`    - plain `model.fit` with the engine's `steps_per_execution` (nothing recorded: the floor);
4. `callback` - the tutorial's keras-lr-finder way: a per-batch callback sets the LR and reads the loss.

Rates are steps per second of the time spent in `fit` (model building and compilation are warmed up
first and excluded alike); the engine's wall time including its fixed per-job cost is reported too.
Variants alternate round by round because this machine's speed drifts between runs. The LR range stays
below divergence so every variant does the same arithmetic, and every variant feeds `fit` the same
arrays (shuffled by `fit`, whole batches; `--steps` is rounded up to whole epochs). The last line is
one JSON object.

    python bench/sweep.py --quick                       # digits MLP, CPU, under a minute
    KERAS_BACKEND=jax python bench/sweep.py --model convnet --batch-size 250 --data synthetic-mnist
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run: a digits MLP, 224 steps (4 epochs), 5 rounds")
    parser.add_argument("--backend", choices=["tensorflow", "jax", "torch"], help="Keras backend (default: KERAS_BACKEND or tensorflow)")
    parser.add_argument("--model", choices=["convnet", "mlp"], help="the tutorial's ConvNet or a small MLP")
    parser.add_argument("--data", choices=["digits", "synthetic-mnist"], help="digits (scikit-learn) or random MNIST-shaped arrays")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int, help="steps per timed run of each variant")
    parser.add_argument("--rounds", type=int, help="interleaved rounds; the median is reported")
    parser.add_argument("--steps-per-execution", type=int, default=50)
    parser.add_argument("--optimizer", default="adam")
    args = parser.parse_args()
    defaults = ({"model": "mlp", "data": "digits", "batch_size": 32, "steps": 224, "rounds": 5} if args.quick else
                {"model": "convnet", "data": "synthetic-mnist", "batch_size": 250, "steps": 1000, "rounds": 5})
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse_args()
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from lrrt.spec import JobSpec
    from worker.engine.data import Arrays
    from worker.engine.schedule import RangeTestSchedule
    from worker.engine.sweep import run_sweep

    x, y = load_data(args.data, args.model)
    model_json = json.loads(make_model(args.model, x.shape[1:]).to_json())
    start_lr, end_lr = 1e-5, 1e-3  # below divergence for Adam on both models: every variant does the same work
    bs = args.batch_size
    per_epoch = len(x) // bs  # every variant feeds fit the same arrays, shuffled by fit, whole batches only
    x, y = x[: per_epoch * bs], y[: per_epoch * bs]
    steps = -(-args.steps // per_epoch) * per_epoch if args.steps > per_epoch else args.steps
    spe = min(args.steps_per_execution, steps)

    spec = JobSpec(model=model_json, dataset={"uri": "builtin:digits", "validation_split": 0.0},
                   optimizers=[{"name": args.optimizer}], loss="sparse_categorical_crossentropy",
                   sweep={"start_lr": start_lr, "end_lr": end_lr, "num_steps": steps, "batch_size": bs,
                          "divergence_threshold": None})
    arrays = Arrays(x, y)

    def engine() -> tuple[float, float]:
        began = time.perf_counter()
        result = run_sweep(spec, data_root=Path("."), data=arrays, steps_per_execution=spe)
        wall = time.perf_counter() - began
        assert len(result["arms"][0]["losses"]) == steps
        return steps / result["engine"]["steps_per_second"] if result["engine"]["steps_per_second"] else wall, wall

    def compiled(steps_per_execution: int, scheduled: bool = True) -> tuple[Any, list]:
        keras.utils.set_random_seed(0)
        model = keras.models.model_from_json(json.dumps(model_json))
        learning_rate = RangeTestSchedule(start_lr, end_lr, steps) if scheduled else start_lr
        optimizer = type(keras.optimizers.get(args.optimizer))(learning_rate=learning_rate)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", steps_per_execution=steps_per_execution,
                      jit_compile=True if keras.backend.backend() == "jax" else False)
        model.optimizer.build(model.trainable_variables)
        return model, [keras.ops.convert_to_numpy(v) for v in model.variables + model.optimizer.variables]

    def timed_fit(model: Any, start: list, callbacks: list) -> float:
        for variable, value in zip(model.variables + model.optimizer.variables, start):
            variable.assign(value)
        began = time.perf_counter()
        model.fit(x, y, batch_size=bs, epochs=max(1, steps // per_epoch), shuffle=True, verbose=0, callbacks=callbacks,
                  steps_per_epoch=steps if steps < per_epoch else None)
        return time.perf_counter() - began

    fit_model, fit_start = compiled(1)
    floor_model, floor_start = compiled(spe)
    cb_model, cb_start = compiled(1, scheduled=False)  # the callback sets a plain LR variable
    finder = TutorialFinder(start_lr, end_lr, steps)
    variants = {
        "engine": lambda: engine(),
        "fit": lambda: (timed_fit(fit_model, fit_start, []),) * 2,
        "floor": lambda: (timed_fit(floor_model, floor_start, []),) * 2,
        "callback": lambda: (timed_fit(cb_model, cb_start, [finder]),) * 2,
    }
    print(f"backend={keras.backend.backend()} model={args.model} data={args.data} batch={bs} steps={steps} "
          f"steps_per_execution={spe} rounds={args.rounds}", flush=True)
    for run in variants.values():  # warm-up: compile everything, fill caches
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    walls: list[float] = []
    t_start = time.time()
    for round_index in range(args.rounds):
        names = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in names:
            fit_s, wall_s = variants[name]()
            times[name].append(fit_s)
            if name == "engine":
                walls.append(wall_s)
        print(f"round {round_index + 1}: " + ", ".join(f"{n} {steps / times[n][-1]:.1f}" for n in variants) + " steps/s", flush=True)
    t_end = time.time()
    rate = {name: steps / statistics.median(values) for name, values in times.items()}
    record = {
        "engine_vs_fit": round(rate["engine"] / rate["fit"], 3),
        "engine_vs_callback": round(rate["engine"] / rate["callback"], 3),
        "engine_vs_floor": round(rate["engine"] / rate["floor"], 3),
        "engine_wall_vs_fit": round(steps / statistics.median(walls) / rate["fit"], 3),
        "engine_steps_per_s": round(rate["engine"], 1),
        "engine_wall_steps_per_s": round(steps / statistics.median(walls), 1),
        "fit_steps_per_s": round(rate["fit"], 1),
        "floor_steps_per_s": round(rate["floor"], 1),
        "callback_steps_per_s": round(rate["callback"], 1),
        "backend": keras.backend.backend(), "keras": keras.__version__, "model": args.model, "data": args.data,
        "batch_size": bs, "steps": steps, "steps_per_execution": spe, "rounds": args.rounds,
        "t_start": round(t_start, 3), "t_end": round(t_end, 3),
    }
    print(json.dumps(record))


class TutorialFinder:
    """keras-lr-finder's loop on Keras 3: set the LR before each batch, read `logs["loss"]` after it."""

    def __new__(cls, start_lr: float, end_lr: float, steps: int):  # a Callback subclass made after Keras is imported
        import keras

        class Finder(keras.callbacks.Callback):
            def on_train_begin(self, logs: dict | None = None) -> None:
                self.step, self.losses = 0, []

            def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
                lr = start_lr * (end_lr / start_lr) ** (self.step / max(steps - 1, 1))
                self.model.optimizer.learning_rate = lr  # what K.set_value(optimizer.lr, lr) became

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                self.losses.append(float(logs["loss"]))  # the tutorial's (running-mean) loss, read every step
                self.step += 1

        return Finder()


def load_data(name: str, model: str):
    import numpy as np

    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.data / 16.0).astype("float32")
        x = x.reshape(-1, 8, 8, 1) if model == "convnet" else x
        return x, digits.target.astype("int32")
    rng = np.random.default_rng(0)  # MNIST's shape and value range, no download (the GPU host has no network)
    x = rng.random((60_000, 28, 28, 1), dtype=np.float32)
    return x if model == "convnet" else x.reshape(len(x), -1), rng.integers(0, 10, len(x)).astype("int32")


def make_model(name: str, shape: tuple[int, ...]):
    import keras

    if name == "convnet":  # the tutorial's ConvNet
        layers = [keras.Input(shape), keras.layers.Conv2D(32, (3, 3), activation="relu"), keras.layers.MaxPooling2D((2, 2)),
                  keras.layers.Conv2D(64, (3, 3), activation="relu"), keras.layers.MaxPooling2D((2, 2)),
                  keras.layers.Flatten(), keras.layers.Dense(256, activation="relu"),
                  keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")]
        if shape[0] < 28:  # 8x8 digits: two valid 3x3 convolutions and poolings would leave nothing
            layers = [layers[0], keras.layers.Conv2D(32, (3, 3), activation="relu", padding="same"),
                      keras.layers.MaxPooling2D((2, 2)), *layers[3:]]
        return keras.Sequential(layers)
    return keras.Sequential([keras.Input(shape), keras.layers.Dense(128, activation="relu"),
                             keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])


if __name__ == "__main__":
    main()
