"""Fine-tuning quality: does a range test that starts from the pretrained weights pick a better
fine-tuning LR than one that starts from a fresh initialisation (issue 21)?

The tasks: an MLP pretrained on digits 0-4 and fine-tuned on digits 5-9 (relabelled 0-4, same head shape),
with the backbone unfrozen and frozen (`trainable: false`, as the model JSON says it); and the same MLP
pretrained on half of the 0-4 rows and fine-tuned on the other half (continued training, where the
pretrained model is already good and a large LR undoes it). For each case
1. the ground truth: fine-tune from the pretrained weights at a log-spaced grid of constant LRs with a
   fixed budget, scored by the held-out loss (`bench.quality_metrics.Grid`);
2. the range test (`worker.engine.sweep.run_sweep`, Adam) from the pretrained weights (`weights`) and
   from scratch (`weights: null`, what lrrt did before), each giving its recommended LR, alone and with
   `sweep.confirm` (its candidates trained from the same start for the fine-tuning's own number of steps,
   `confirm.steps`, scored on 20% of the fine-tuning rows the range test then does not train on; never on
   the held-out rows the grid is scored on);
3. fine-tune from the pretrained weights at each recommended LR (same budget and seed) and report the
   normalized regret against the grid's best, where 1 is "no better than not fine-tuning at all" (the
   pretrained weights' own held-out loss is the baseline).

Usage (2 shared CPU cores, about 35 minutes for 3 seeds)::

    nice -n 10 python -m bench.finetune
    nice -n 10 python -m bench.finetune --seeds 1 --out finetune.json

Prints one table row per case and, as its LAST line, one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: keep the table readable

import numpy as np  # noqa: E402

from bench.quality_metrics import Grid, log_grid, summarize  # noqa: E402

#: Fine-tuning budget: epochs over the fine-tuning rows at this batch size (~100 steps).
EPOCHS, BATCH = 4, 32
GRID = log_grid(-5, 0, 0.25)
SWEEP = {"start_lr": 1e-6, "end_lr": 1.0, "num_steps": 120, "batch_size": BATCH}


def digits_split(seed: int, same_classes: bool) -> dict[str, np.ndarray]:
    """New classes: pretrain on digits 0-4, fine-tune on 5-9 (relabelled 0-4). Same classes: pretrain on
    half of the 0-4 rows, fine-tune on the others (continued training on more data of the same task)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = (bunch.data / 16.0).astype("float32"), bunch.target.astype("int64")
    rng = np.random.default_rng(seed)
    low = rng.permutation(np.flatnonzero(y < 5))
    if same_classes:
        pre, tune = low[: len(low) // 2], low[len(low) // 2:]
        offset = 0
    else:
        pre, tune, offset = low, rng.permutation(np.flatnonzero(y >= 5)), 5
    cut = int(0.8 * len(tune))
    return {"x_pre": x[pre], "y_pre": y[pre], "x": x[tune[:cut]], "y": y[tune[:cut]] - offset,
            "x_val": x[tune[cut:]], "y_val": y[tune[cut:]] - offset}


def make_model(frozen: bool) -> Any:
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu", name="backbone_1"),
                              keras.layers.Dense(32, activation="relu", name="backbone_2"),
                              keras.layers.Dense(5, activation="softmax", name="head")])
    for name in ("backbone_1", "backbone_2"):
        model.get_layer(name).trainable = not frozen
    return model


def pretrain(data: dict[str, np.ndarray], root: Path, seed: int) -> list[np.ndarray]:
    import keras

    keras.utils.set_random_seed(seed)
    model = make_model(frozen=False)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(data["x_pre"], data["y_pre"], epochs=20, batch_size=32, verbose=0)
    model.save_weights(str(root / "pre.weights.h5"))
    return model.get_weights()


def fine_tune(weights: list[np.ndarray], frozen: bool, lr: float | None, data: dict[str, np.ndarray], seed: int) -> float:
    """Held-out loss after the budget at `lr` from the pretrained weights (no training for `lr=None`)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = make_model(frozen)
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.Adam(lr or 0.0), loss="sparse_categorical_crossentropy")
    if lr is not None:
        model.fit(data["x"], data["y"], epochs=EPOCHS, batch_size=BATCH, shuffle=True, verbose=0)
    loss = float(model.evaluate(data["x_val"], data["y_val"], verbose=0))
    return loss if np.isfinite(loss) else float("inf")


#: The job's recommendation per start and mode: (result key, weights reference, confirm).
STARTS = {"weights": ("file:pre.weights.h5", False), "scratch": (None, False),
          "weights_confirm": ("file:pre.weights.h5", True), "scratch_confirm": (None, True)}


def recommended(frozen: bool, weights: str | None, confirm: bool, data: dict[str, np.ndarray], root: Path,
                seed: int) -> float | None:
    """The job's recommended LR: the range test's, or with `confirm` the measured winner of its candidates
    (which need held-out rows: 20% of the fine-tuning rows, drawn by the seed)."""
    from lrrt.settings import Settings
    from lrrt.spec import JobSpec
    from worker.engine.data import Arrays
    from worker.engine.sweep import run_sweep

    budget = EPOCHS * math.ceil(len(data["x"]) / BATCH)  # the fine-tuning's own steps: confirm.steps, as docs/api.md advises
    spec = JobSpec(model=json.loads(make_model(frozen).to_json()), dataset={"uri": "builtin:digits",
                   "validation_split": 0.2 if confirm else 0.0}, optimizers=[{"name": "adam"}],
                   sweep={**SWEEP, "seed": seed, "confirm": {"steps": budget} if confirm else None}, weights=weights)
    result = run_sweep(spec, data_root=root, caps=Settings(data_root=root), data=Arrays(data["x"], data["y"]))
    return (result.get("recommendation") or {}).get("learning_rate")


def run_case(frozen: bool, same_classes: bool, seeds: int, root: Path) -> dict[str, Any]:
    losses: list[list[float]] = []
    picks: dict[str, list[float | None]] = {start: [] for start in STARTS}
    scored: dict[str, list[float]] = {start: [] for start in STARTS}
    baselines = []
    for seed in range(seeds):
        data = digits_split(seed, same_classes)
        pre = pretrain(data, root, seed)
        losses.append([fine_tune(pre, frozen, float(lr), data, seed) for lr in GRID])
        baselines.append(fine_tune(pre, frozen, None, data, seed))
        for start, (reference, confirm) in STARTS.items():
            lr = recommended(frozen, reference, confirm, data, root, seed)
            picks[start].append(lr)
            scored[start].append(fine_tune(pre, frozen, lr, data, seed) if lr else baselines[-1])
    grid = Grid(GRID, np.asarray(losses))
    baseline = float(np.mean(baselines))
    summaries = {start: summarize(picks[start], scored[start], grid, baseline) for start in picks}
    task = "same classes" if same_classes else "new classes"
    return {"case": f"{task}, {'frozen backbone' if frozen else 'unfrozen'}", "best_lr": grid.best_lr,
            "best_loss": grid.best_loss, "baseline": baseline, "picks": picks,
            **{f"{start}_normalized_regret": s.normalized for start, s in summaries.items()},
            **{f"{start}_steps_from_best": s.steps for start, s in summaries.items()}}


#: The cases by name: (same classes, frozen backbone).
CASES = {"new-unfrozen": (False, False), "new-frozen": (False, True), "same-unfrozen": (True, False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lrrt-finetune-") as scratch:
        for case in args.cases:
            same_classes, frozen = CASES[case]
            rows.append(run_case(frozen, same_classes, args.seeds, Path(scratch)))
    print("| case | grid best LR | " + " | ".join(f"{start.replace('_', ' + ')}: LRs; normalized regret"
                                                  for start in STARTS) + " |")
    print("| --- | --- |" + " --- |" * len(STARTS))
    for row in rows:
        def pick(start: str, row: dict[str, Any] = row) -> str:
            lrs = ", ".join("none" if lr is None else f"{lr:.2g}" for lr in row["picks"][start])
            return f"{lrs}; {row[f'{start}_normalized_regret']:.3f}"

        print(f"| {row['case']} | {row['best_lr']:.2g} | " + " | ".join(pick(start) for start in STARTS) + " |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
