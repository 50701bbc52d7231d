"""lrrt against pytorch-lr-finder, side by side: the same models, data, batch, steps and LR range.

One invocation starts one runner process per finder (Keras's backend is fixed per process): lrrt's
engine on TensorFlow, lrrt's engine on JAX, and pytorch-lr-finder's `range_test` on torch (CPU). The
runners build every model and dataset once, warm up (compilation, caches), then the parent asks them
for one timed run at a time, model by model and round by round, the runner order rotating each round,
because this machine's speed drifts and its 2 cores are shared: only numbers from the same rounds are
compared. `auto` is a run of its own, sent to whichever lrrt runner `lrrt.routing.auto_backend`
picks for the model on this device (what the API does when both backends have live workers).

Timed: the wall time of one whole range test in a warm process, as a user's second call sees it
(lrrt: `run_sweep` from spec to result, suggestions included; pytorch-lr-finder: `LRFinder(...)` and
`range_test`, its state cache included). Steps/s = steps / that time. The LR range stays below
divergence (Adam, 1e-5 to 1e-2) and lrrt's early stop is off, so every finder runs every step.

    pip install -e '.[worker,bench]'
    python bench/peers.py                    # the four models, 3 rounds (several minutes on 2 cores)
    python bench/peers.py --models digits_mlp --rounds 2
    python bench/peers.py --lrrt-only --models convnet12,convnet16,convnet20 --rounds 5   # the ConvNet threshold

The last line is one JSON object: steps/s per model and finder, `auto_vs_torch_lr_finder` per model
(median auto steps/s over the median steps/s of pytorch-lr-finder's faster thread setting, see
`RUNNERS`) and its minimum over the models, `jax_vs_tensorflow` per model, and the 1-minute load average at
the start and the end (the machine is shared: say how loaded it was).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

START_LR, END_LR = 1e-5, 1e-2


@dataclass(frozen=True)
class Case:
    """One model with its data, batch size and steps per timed run."""

    name: str
    batch_size: int
    steps: int


CASES = {
    case.name: case
    for case in (
        Case("digits_mlp", 32, 224),  # examples/digits_mlp.json: 64-64-10 on the 8x8 digits
        Case("digits_convnet", 32, 224),  # bench/sweep.py's ConvNet cut down for 8x8 inputs
        Case("mnist_convnet", 250, 40),  # the tutorial's ConvNet at batch 250 on synthetic MNIST-shaped data
        Case("text_lstm", 64, 100),  # Embedding(5000, 32) -> LSTM(32) -> Dense(2) on 80 random token ids
    )
}
#: Extra cases for measuring the ConvNet threshold of the `auto` rule (`CPU_CONV_TENSORFLOW_FROM`), not run by
#: default: `--models convnet12,convnet16,...` is the ConvNet above on synthetic N x N images, batch 32, 224 steps
#: (N < 28: the digits variant, first convolution padded; N >= 28: the tutorial's).
CONVNET_SIDE = re.compile(r"convnet(\d+)")


def case_of(name: str) -> Case:
    """A named case, or a `convnet<N>` threshold case."""
    return CASES[name] if name in CASES or not CONVNET_SIDE.fullmatch(name) else Case(name, 32, 224)


def image_side(name: str) -> int | None:
    """The side of a ConvNet case's square images (None: not a ConvNet)."""
    sized = CONVNET_SIDE.fullmatch(name)
    return int(sized.group(1)) if sized else {"digits_convnet": 8, "mnist_convnet": 28}.get(name)


#: `torch1` is pytorch-lr-finder with `torch.set_num_threads(1)`: on this shared 2-core machine torch's
#: default (one thread per core) ran the digits models 3-25x slower than one thread (its OpenMP workers wait
#: on cores other processes hold), so the peer is scored by the faster of its two settings, per model.
RUNNERS = ("tensorflow", "jax", "torch", "torch1")


# --------------------------------------------------------------------------------------- data


def arrays(case: str) -> tuple[Any, Any]:
    """The same arrays in every runner: the digits, or seeded random MNIST-shaped images and token ids."""
    import numpy as np

    rng = np.random.default_rng(0)
    if case.startswith("digits"):
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.data / 16.0).astype("float32")
        return (x.reshape(-1, 8, 8, 1) if case == "digits_convnet" else x), digits.target.astype("int64")
    if case == "mnist_convnet" or CONVNET_SIDE.fullmatch(case):
        side = image_side(case)
        return rng.random((12_000, side, side, 1), dtype=np.float32), rng.integers(0, 10, 12_000).astype("int64")
    return rng.integers(1, 5000, (6_400, 80)).astype("int64"), rng.integers(0, 2, 6_400).astype("int64")


def keras_model_json(case: str) -> dict[str, Any]:
    import keras

    from bench.sweep import make_model

    if case == "digits_mlp":
        return json.loads((REPO / "examples" / "digits_mlp.json").read_text())
    if case == "text_lstm":
        model = keras.Sequential([keras.Input((80,), dtype="int32"), keras.layers.Embedding(5000, 32),
                                  keras.layers.LSTM(32), keras.layers.Dense(2, activation="softmax")])
    else:
        side = image_side(case)
        model = make_model("convnet", (side, side, 1))
    return json.loads(model.to_json())


def torch_model(case: str) -> Any:
    """The same architectures in torch (logits out; CrossEntropyLoss does the softmax)."""
    from torch import nn

    class LastStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.lstm, self.out = nn.Embedding(5000, 32), nn.LSTM(32, 32, batch_first=True), nn.Linear(32, 2)

        def forward(self, x: Any) -> Any:
            return self.out(self.lstm(self.embed(x))[0][:, -1])

    if case == "digits_mlp":
        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    if case == "text_lstm":
        return LastStep()
    head = [nn.Flatten(), nn.LazyLinear(256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)]
    if (image_side(case) or 28) < 28:
        body = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2)]
    else:
        body = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*body, *head)


# --------------------------------------------------------------------------------------- runners


def lrrt_runner(cases: list[str]) -> tuple[dict[str, Any], Any]:
    """One timed lrrt range test per call, in this (warm) process; and each case's model JSON."""
    from lrrt.spec import JobSpec
    from worker.engine.data import Arrays
    from worker.engine.sweep import run_sweep

    specs, data = {}, {}
    for name in cases:
        steps, batch_size = case_of(name).steps, case_of(name).batch_size
        specs[name] = JobSpec(model=keras_model_json(name), dataset={"uri": "builtin:digits", "validation_split": 0.0},
                              optimizers=[{"name": "adam"}],
                              sweep={"start_lr": START_LR, "end_lr": END_LR, "num_steps": steps,
                                     "batch_size": batch_size, "divergence_threshold": None})
        data[name] = Arrays(*arrays(name))

    def run(name: str) -> dict[str, Any]:
        began = time.perf_counter()
        result = run_sweep(specs[name], data_root=Path("."), data=data[name])
        seconds = time.perf_counter() - began
        steps = len(result["arms"][0]["losses"])
        return {"steps": steps, "seconds": seconds, "fit_steps_per_s": result["engine"]["steps_per_second"],
                "suggestion": result["arms"][0]["recommended_lr"]}

    return {name: spec.model for name, spec in specs.items()}, run


def torch_runner(cases: list[str], threads: int | None = None) -> tuple[dict[str, Any], Any]:
    """One timed pytorch-lr-finder `range_test` per call (a fresh LRFinder, as a user makes one)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from torch_lr_finder import LRFinder

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    models, loaders = {}, {}
    for name in cases:
        x, y = arrays(name)
        loaders[name] = DataLoader(TensorDataset(torch.from_numpy(x.transpose(0, 3, 1, 2).copy() if x.ndim == 4 else x),
                                                 torch.from_numpy(y)),
                                   batch_size=case_of(name).batch_size, shuffle=True, drop_last=True)
        models[name] = torch_model(name)
        models[name](next(iter(loaders[name]))[0])  # materialise LazyLinear before the finder caches the state

    def run(name: str) -> dict[str, Any]:
        model = models[name]
        began = time.perf_counter()
        finder = LRFinder(model, torch.optim.Adam(model.parameters(), lr=START_LR), torch.nn.CrossEntropyLoss(), device="cpu")
        finder.range_test(loaders[name], end_lr=END_LR, num_iter=case_of(name).steps, step_mode="exp", diverge_th=1e12)
        seconds = time.perf_counter() - began
        steps = len(finder.history["loss"])
        finder.reset()  # back to the initial weights, as lrrt starts every run from them
        return {"steps": steps, "seconds": seconds}

    return {}, run


def serve(runner: str, cases: list[str]) -> None:
    """Runner process: build, warm up, then answer one JSON line per timed-run request on stdin."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not runner.startswith("torch"):
        os.environ["KERAS_BACKEND"] = runner
    out = sys.stdout
    sys.stdout = sys.stderr  # libraries' chatter must not reach the parent's protocol
    if runner.startswith("torch"):
        models, run = torch_runner(cases, threads=1 if runner == "torch1" else None)
    else:
        models, run = lrrt_runner(cases)
    for name in cases:
        run(name)  # warm-up: compile, fill caches; not timed
    out.write(json.dumps({"ready": runner, "models": models}) + "\n")
    out.flush()
    for line in sys.stdin:
        out.write(json.dumps(run(json.loads(line)["case"])) + "\n")
        out.flush()


class Runner:
    def __init__(self, name: str, cases: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", name, "--models", ",".join(cases)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        self.models: dict[str, Any] = {}

    def ready(self) -> None:
        hello = json.loads(self._line())
        self.models = hello["models"]

    def time(self, case: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"case": case}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.name} runner exited with code {self.proc.wait()}")
        return line

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:  # seen: TensorFlow's teardown taking over a minute on the loaded machine
            self.proc.kill()
            self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES) + " (or convnet<N>)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lrrt-only", action="store_true",
                        help="only lrrt's runners (TensorFlow, JAX, auto), no peer: what the ConvNet threshold needs")
    parser.add_argument("--serve", choices=RUNNERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = [c for c in args.models.split(",") if c]
    if args.serve:
        serve(args.serve, cases)
        return

    from lrrt.routing import auto_backend

    runners = {name: Runner(name, cases) for name in (RUNNERS[:2] if args.lrrt_only else RUNNERS)}
    load_start = os.getloadavg()[0]
    for runner in runners.values():  # started together, warmed up one after another would be fairer but slower
        runner.ready()
    auto = {name: auto_backend(runners["tensorflow"].models[name], live={"tensorflow": "cpu", "jax": "cpu"},
                               batch_size=case_of(name).batch_size) for name in cases}
    for case, choice in auto.items():
        print(f"auto for {case}: {choice.backend} ({choice.reason})", flush=True)
    order = ["tensorflow", "jax", "auto", *(n for n in RUNNERS[2:] if n in runners)]
    samples: dict[str, dict[str, list[float]]] = {case: {name: [] for name in order} for case in cases}
    t_start = time.time()
    for round_index in range(args.rounds):
        turn = order[round_index % len(order):] + order[: round_index % len(order)]
        for case in cases:
            for name in turn:
                runner = runners[auto[case].backend if name == "auto" else name]
                timed = runner.time(case)
                samples[case][name].append(timed["steps"] / timed["seconds"])
            print(f"round {round_index + 1} {case}: " + ", ".join(f"{n} {samples[case][n][-1]:.1f}" for n in order)
                  + " steps/s", flush=True)
    t_end, load_end = time.time(), os.getloadavg()[0]
    median = {case: {name: round(statistics.median(v), 2) for name, v in per.items()} for case, per in samples.items()}
    summary: dict[str, Any] = {
        "steps_per_s": median, "spread": {c: {n: [round(min(v), 2), round(max(v), 2)] for n, v in per.items()}
                                          for c, per in samples.items()},
        "auto": {case: choice.backend for case, choice in auto.items()},
        "jax_vs_tensorflow": {case: round(m["jax"] / m["tensorflow"], 3) for case, m in median.items()},
    }
    if not args.lrrt_only:
        ratio = {case: round(m["auto"] / max(m["torch"], m["torch1"]), 3) for case, m in median.items()}
        summary.update(auto_vs_torch_lr_finder=ratio, min_auto_vs_torch_lr_finder=min(ratio.values()))
    print(json.dumps({
        **summary, "steps": {name: case_of(name).steps for name in cases},
        "batch_size": {name: case_of(name).batch_size for name in cases}, "rounds": args.rounds,
        "lr_range": [START_LR, END_LR], "t_start": round(t_start, 3), "t_end": round(t_end, 3),
        "load_average_1m": [round(load_start, 2), round(load_end, 2)],
    }), flush=True)
    for runner in runners.values():  # after the result line: a runner slow to exit must not lose it
        runner.close()


if __name__ == "__main__":
    main()
