"""The LR range test of a job's runs (`sweep_runs`) and its confirm candidates (`confirm_runs`), with
Python out of the hot loop; `KerasEngine` runs them for the coordinator, `run_sweep` a whole job here.

How a sweep runs, and why:
- The model is built once per seed under `keras.utils.set_random_seed`, and its weights are the
  starting point of every arm for that seed; every arm also sees the same batches in the same order:
  `fit` shuffles the arrays itself (as a user's plain `fit` does, with no copy of the data) and the
  global seeds are set from (seed, epoch) at each epoch's start, just before the backend draws that
  epoch's permutation. The tutorial's own loop forgets both.
- The LR is a `RangeTestSchedule` of the optimizer's step counter and each step's own loss goes into
  a ring buffer on the device (`recorder`), so `fit` runs `steps_per_execution` steps per call and
  Python looks in only between chunks: divergence and NaN stop, progress, cancellation, validation.
- A compiled model is reused for the repeats of an arm and, within a warm process, for a later job
  with the same model, loss, optimizer and sweep settings (`_compiled`); weights, optimizer slots and
  the recorder are reset between runs, so reuse never changes a curve.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from lrrt import suggestions as rules
from lrrt.coordinator import Ran
from lrrt.inprocess import run_here
from lrrt.problems import CapExceeded, ConfigInvalid, DatasetError, EngineError, ResourceExhausted
from lrrt.progress import Chunk, ChunkHook, finite
from lrrt.result_model import RunFigures, RunOutcome
from lrrt.results import RunCurves
from lrrt.routing import in_process
from lrrt.settings import Settings, get_settings
from lrrt.spec import JobSpec, OptimizerArm, cap_violations
from lrrt.vetting.compiled import LOSS_CLASS_OF, OPTIMIZER_CLASS_OF
from lrrt.vetting.vet import vet_spec
from worker.engine.data import Arrays, Prepared, load_dataset, prepare
from worker.engine.faults import explained_by_request
from worker.engine.models import build_model, input_specs, output_specs
from worker.engine.recorder import StepLossRecorder, install, read_steps
from worker.engine.schedule import RangeTestSchedule, lr_values
from worker.engine.scoring import held_out_loss
from worker.engine.targets import check_targets
from worker.engine.weights import load_into

#: Steps per compiled call: docs/design.md ("Speed") has 50 reaching ~the floor on an H200. Smaller sweeps use
#: n//10 so progress still arrives about ten times per arm.
MAX_STEPS_PER_EXECUTION = 50
#: In validation mode a chunk ends at every validation point; at least this many per arm.
MIN_VALIDATION_POINTS = 50
COMPILED_CACHE_ENTRIES = 4


def run_sweep(
    spec: JobSpec,
    *,
    data_root: Path,
    on_chunk: ChunkHook | None = None,
    caps: Settings | None = None,
    data: Arrays | None = None,
    steps_per_execution: int | None = None,
    allow_download: bool = True,
) -> dict[str, Any]:
    """The whole job in this process (`lrrt.inprocess.run_here`: the coordinator a worker runs, its runs
    one by one, confirm candidates included); return the API result minus "id".

    `data` skips dataset resolution (benchmarks, notebooks, tests); otherwise `spec.dataset.uri` is
    resolved under `data_root`. `on_chunk` receives each chunk's new points (with the job's step
    counts) and may return a stop reason: the job is then cancelled and its partial result returned
    with `stopped` set. Raises `EngineError` subclasses, each with a problem object for the user.
    """
    engine = KerasEngine(data_root, caps, data, steps_per_execution, allow_download)
    ran = keras.backend.backend()
    finished = run_here(spec, engine, backend=ran, backend_reason=in_process(spec.backend, spec.model, ran,
                                                                             spec.sweep.batch_size), on_chunk=on_chunk)
    assert finished.result is not None, "a job that ended without failing ran at least one chunk"
    return finished.result.api()  # JSON for notebooks, benchmarks and `RangeTestResult`


@dataclass
class KerasEngine:
    """`lrrt.coordinator.Engine` on this module: one range-test run (`sweep_runs`) or one confirm
    candidate (`confirm_runs`) per call. The worker's tasks and `run_sweep` both run it.

    The tenant is not checked here: in-process (`run_sweep`, `lr_find`, `lrrt run`) the caller reads with
    its own credentials; the service worker checks its tenant's grants first (`worker.tasks`)."""

    data_root: Path
    caps: Settings | None = None
    data: Arrays | None = None
    steps_per_execution: int | None = None
    allow_download: bool = True

    def prepare(self) -> None:
        """Nothing to load: this module imported Keras."""

    def sweep(self, spec: JobSpec, arm_index: int, repeat: int, on_chunk: ChunkHook, *, tenant: str) -> Ran:
        done = sweep_runs(spec, runs=[(arm_index, repeat)], on_chunk=on_chunk, **self._options())
        curves = done.curves[(arm_index, repeat)]
        return Ran(RunOutcome(stop_reason=curves.stop_reason, fingerprint=curves.fingerprint,
                              variables=done.variables.get((arm_index, repeat))), done.engine, done.stopped)

    def confirm(self, spec: JobSpec, arm_index: int, slot: int, lr: float, on_chunk: ChunkHook, *, tenant: str) -> Ran:
        done = confirm_runs(spec, [(arm_index, slot, lr)], on_chunk=on_chunk, **self._options())
        return Ran(done.curves[(arm_index, slot)].outcome(), done.engine, done.stopped)

    def _options(self) -> dict[str, Any]:
        return {"data_root": self.data_root, "caps": self.caps, "data": self.data,
                "steps_per_execution": self.steps_per_execution, "allow_download": self.allow_download}


@dataclass
class SweepRuns:
    """What `sweep_runs` ran: each (arm index, repeat)'s curves (with its fingerprint) and `variables`
    (`_Job.variables`), the engine's figures, why the sweep stopped early (or None), the planned steps per
    run and every seed of the job."""

    curves: dict[tuple[int, int], RunCurves]
    engine: RunFigures
    stopped: str | None
    num_steps: int
    seeds: list[int]
    variables: dict[tuple[int, int], dict[str, str]]


def sweep_runs(
    spec: JobSpec,
    *,
    data_root: Path,
    runs: list[tuple[int, int]] | None = None,
    on_chunk: ChunkHook | None = None,
    caps: Settings | None = None,
    data: Arrays | None = None,
    steps_per_execution: int | None = None,
    allow_download: bool = True,
) -> SweepRuns:
    """Run the (arm index, repeat) pairs in `runs` (default: every arm and repeat, arm by arm).

    A run depends only on the spec and its pair, never on which runs came before it in this process:
    its weights are built from seed + repeat and its batches drawn from the same seed, so a job's
    runs can be spread over worker processes (`worker.tasks`) and give the curves one process would.
    """
    with _Setup(spec, data_root, caps, data, allow_download) as setup:
        sweep = spec.sweep
        chunk = _chunk_size(setup.num_steps, steps_per_execution, sweep.evaluate_on == "validation")
        seeds = [sweep.seed + r for r in range(sweep.repeats)]
        pairs = runs if runs is not None else [(i, r) for i in range(len(spec.optimizers)) for r in range(len(seeds))]
        starts = {r: setup.start(seeds[r]) for r in sorted({r for _, r in pairs})}
        lrs = lr_values(sweep.start_lr, sweep.end_lr, setup.num_steps, sweep.mode).tolist()
        job = _Job(setup, setup.num_steps, chunk, on_chunk, len(pairs), validation=sweep.evaluate_on == "validation")
        curves = {(i, r): job.run(i, spec.optimizers[i], r, seeds[r], starts[r], lrs) for i, r in pairs}
    return SweepRuns(curves, stopped=job.stopped, num_steps=setup.num_steps, seeds=seeds,
                     engine=setup.engine(job, chunk), variables={(i, r): job.variables[(i, r)] for i, r in curves
                                                                 if (i, r) in job.variables})


@dataclass
class ConfirmCurve:
    """One confirm candidate's training: its constant LR, per-step losses, held-out loss and how it ended."""

    lr: float
    curves: RunCurves
    val_loss: float | None
    variables: dict[str, str] | None = None

    def outcome(self) -> RunOutcome:
        """What the result's `arms[].confirm` entry is made of (`lrrt.confirm.entries`)."""
        return RunOutcome(lr=self.lr, val_loss=finite(self.val_loss), steps=len(self.curves.losses),
                          losses=[finite(v) for v in self.curves.losses], stop_reason=self.curves.stop_reason,
                          fingerprint=self.curves.fingerprint, variables=self.variables)


@dataclass
class ConfirmRuns:
    """What `confirm_runs` trained, by (arm index, slot), with the engine's figures."""

    curves: dict[tuple[int, int], ConfirmCurve]
    engine: RunFigures
    stopped: str | None


def confirm_runs(
    spec: JobSpec,
    slots: list[tuple[int, int, float]],
    *,
    data_root: Path,
    on_chunk: ChunkHook | None = None,
    caps: Settings | None = None,
    data: Arrays | None = None,
    steps_per_execution: int | None = None,
    allow_download: bool = True,
) -> ConfirmRuns:
    """Train each (arm index, slot, lr) of `slots` at its constant LR for the job's confirm budget, from the
    job's initial weights (seed `sweep.seed`, the range test's first repeat) with the same batch order,
    and score it by the data loss on the held-out rows.

    Like a range-test run, a candidate depends only on the spec and its slot, so candidates spread over
    workers train as they would in one process. It stops early only on a NaN loss (it then cannot win:
    `lrrt.confirm`), not on `divergence_threshold`: Adam's first steps can spike the loss 17x
    and recover, and that stop ended candidates that trained best over the budget (docs/quality.md,
    run D: 58 of 216 stopped, 0.099 -> 0.027 regret on illcond_mlp/adam without it); a candidate that
    really blows up ends with a high held-out loss or a NaN, and loses either way.
    """
    assert spec.sweep.confirm is not None, "confirm_runs trains the candidates of a spec with sweep.confirm"
    with _Setup(spec, data_root, caps, data, allow_download) as setup:
        budget = spec.sweep.confirm_steps(len(setup.data))
        _check_caps(spec, setup.caps, train_samples=len(setup.data))
        chunk = _chunk_size(budget, steps_per_execution, False)
        start = setup.start(spec.sweep.seed)
        job = _Job(setup, budget, chunk, on_chunk, len(slots), validation=False)
        curves = {}
        for arm_index, slot, lr in slots:
            run = job.run(arm_index, spec.optimizers[arm_index], 0, spec.sweep.seed, start, [lr] * budget,
                          candidate=slot)
            score = held_out_loss(job.last_model, setup.data) if run.stop_reason == "completed" else None
            curves[(arm_index, slot)] = ConfirmCurve(lr, run, score, job.variables.get((arm_index, slot)))
    return ConfirmRuns(curves, setup.engine(job, chunk), job.stopped)


class _Setup:
    """What every run of a job needs before its first step, and the one place its errors are mapped:
    the vetted config, the first build (which also fails fast on a bad model), the losses, the
    prepared data and the planned length. A context manager, so any failure inside a `with` block
    that is the device running out of memory reads as `ResourceExhausted`."""

    def __init__(self, spec: JobSpec, data_root: Path, caps: Settings | None, data: Arrays | None,
                 allow_download: bool) -> None:
        self.spec, self.data_root, self.arrays, self.allow_download = spec, data_root, data, allow_download
        self.caps = caps or get_settings()
        self.began = time.perf_counter()

    def __enter__(self) -> _Setup:
        try:
            self._prepare()
        except BaseException as exc:
            self.__exit__(type(exc), exc, None)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not isinstance(exc, EngineError) and isinstance(exc, Exception) and _is_oom(exc):
            raise ResourceExhausted(
                "The device ran out of memory running this model at this batch size. Use a smaller batch_size, "
                "smaller inputs or fewer and narrower layers.", error=type(exc).__name__
            ) from None

    def _prepare(self) -> None:
        spec, caps, sweep = self.spec, self.caps, self.spec.sweep
        _check_caps(spec, caps)
        self.config = vet_spec(spec, caps, dataset=self.arrays is None)
        keras.utils.set_random_seed(sweep.seed)
        self.first = build_model(self.config, caps, mixed_precision=sweep.mixed_precision)
        self.weights = load_into(self.first, spec.weights, self.data_root, caps) if spec.weights else None
        outputs = output_specs(self.first)
        self.losses = _losses(spec, [o.name for o in outputs])  # fail fast, before any data is loaded
        arrays = self.arrays if self.arrays is not None else load_dataset(
            spec.dataset, data_root=self.data_root, caps=caps, allow_download=self.allow_download,
            inputs=input_specs(self.first), seed=sweep.seed,
        )
        self.classes = arrays.classes
        self.data = prepare(arrays, spec.dataset, inputs=input_specs(self.first), outputs=[o.name for o in outputs],
                            seed=sweep.seed)
        check_targets(self.data, outputs, spec.loss_names() if isinstance(spec.loss, str) else
                      [spec.loss[o.name] for o in outputs])
        _check_caps(spec, caps, train_samples=len(self.data))
        self.num_steps = sweep.total_steps(len(self.data))
        if sweep.batch_size > len(self.data):
            raise DatasetError(f"batch_size {sweep.batch_size} is larger than the {len(self.data)} training rows")
        missing = sweep.held_out_missing("the data has no held-out rows", "set dataset.validation_split > 0, "
                                         "or upload x_val and y_val") if self.data.held_out == 0 else None
        if missing is not None:  # before the range test, not after it
            raise DatasetError(missing)

    def start(self, seed: int) -> list[np.ndarray]:
        """The initial weights of the runs of `seed` (the first build's for the job's own seed, and for every
        seed when the job starts from the user's weights)."""
        if seed == self.spec.sweep.seed or self.weights is not None:
            return _variables(self.first)
        return _variables(_seeded_model(self.config, self.caps, seed, self.spec.sweep.mixed_precision))

    def engine(self, job: _Job, chunk: int) -> RunFigures:
        """The engine's figures of what `job` ran (`weights`: the {uri, sha256} every run started from,
        None for a fresh start; `classes`: an image folder's class names, in label order)."""
        return RunFigures(keras=keras.__version__, backend=keras.backend.backend(), device=_device(),
                          steps_per_execution=chunk, steps=job.steps_run, fit_seconds=round(job.fit_seconds, 3),
                          seconds=round(time.perf_counter() - self.began, 3), weights=self.weights,
                          classes=None if self.classes is None else list(self.classes))


# --------------------------------------------------------------------------- one arm, one seed


class _Job:
    """State shared by the runs of one `sweep_runs` or `confirm_runs` call: data, progress counters, the stop flag."""

    def __init__(self, setup: _Setup, num_steps: int, chunk: int, on_chunk: ChunkHook | None, runs: int, *,
                 validation: bool) -> None:
        self.spec, self.caps, self.data, self.config = setup.spec, setup.caps, setup.data, setup.config
        self.num_steps, self.chunk, self.losses, self.validation = num_steps, chunk, setup.losses, validation
        self.on_chunk = on_chunk
        self.hook_error: BaseException | None = None
        self.total = runs * num_steps
        self.done = 0
        self.steps_run = 0
        self.fit_seconds = 0.0
        self.stopped: str | None = None
        self.last_model: keras.Model | None = None
        #: (arm index, repeat or confirm slot) -> `_variables_at_end` of each run that trained
        self.variables: dict[tuple[int, int], dict[str, str]] = {}

    def run(self, arm_index: int, arm: OptimizerArm, repeat: int, seed: int, start: list[np.ndarray],
            lrs: Sequence[float], *, candidate: int | None = None) -> RunCurves:
        """One run: the range test (`lrs` follows the schedule) or a confirm candidate (`candidate` set,
        `lrs` constant), from `start` with seed `seed`'s batch order."""
        sweep = self.spec.sweep
        run = RunCurves(val_losses=[] if self.validation else None)
        if self.stopped:
            run.stop_reason = self.stopped
            return run
        compiled = _compiled(self.config, self.spec, self.caps, arm, self.num_steps, self.chunk, self.losses,
                             constant=candidate is not None)
        compiled.reset(start, lrs[0] if candidate is not None else None)
        self.last_model = compiled.model
        monitor = _Monitor(self, compiled, run, arm_index, arm.display_label, repeat, seed, lrs, candidate)
        x, y, epochs, steps_per_epoch = _epochs(self.data, sweep.batch_size, self.num_steps)
        run.fingerprint = {"initial_weights": _digest(start),
                           "first_batch": _digest(_first_batch(x, y, sweep.batch_size, steps_per_epoch, seed))}
        keras.utils.set_random_seed(seed)  # TensorFlow seeds its shuffle when fit builds the dataset, before any epoch
        began = time.perf_counter()
        try:
            compiled.model.fit(x, y, batch_size=sweep.batch_size, shuffle=True, verbose=0, epochs=epochs,
                               steps_per_epoch=steps_per_epoch, callbacks=[monitor])
        except EngineError:
            raise
        except Exception as exc:
            if self.hook_error is not None:  # the task layer's own failure (Redis...), not the user's configuration
                raise self.hook_error from None
            if _is_oom(exc) or not explained_by_request(exc):  # ours (an import, XLA...): `internal` with the job id
                raise
            detail = (f"training failed with loss {self.spec.loss!r} and optimizer {arm.name!r}: "
                      f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}")
            raise ConfigInvalid(detail, errors=[{"in": "body", "pointer": pointer, "type": "training", "message": detail}
                                                for pointer in ("/loss", f"/optimizers/{arm_index}")]) from None
        if self.hook_error is not None:
            raise self.hook_error
        self.fit_seconds += time.perf_counter() - began
        self.steps_run += len(run.losses)
        self.variables[(arm_index, repeat if candidate is None else candidate)] = _variables_at_end(compiled.model, start)
        return run


class _Monitor(keras.callbacks.Callback):
    """What Python does between chunks: read the ring, check NaN and divergence, validate, report, stop."""

    def __init__(self, job: _Job, compiled: _Compiled, run: RunCurves, arm_index: int, label: str, repeat: int,
                 seed: int, lrs: Sequence[float], candidate: int | None) -> None:
        super().__init__()
        self.job, self.compiled, self.run = job, compiled, run
        self.arm_index, self.label, self.repeat, self.seed = arm_index, label, repeat, seed
        self.lrs, self.candidate = lrs, candidate
        self.smoother = rules.Smoother(job.spec.sweep.smoothing)
        self.best = math.inf

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Fix this epoch's shuffle where the backend draws it per epoch (NumPy under JAX, torch) after this hook.

        Seeding right here, not once before `fit`, keeps whatever `fit` draws first (on a freshly
        compiled model, say) from shifting the order of one arm's batches against another's. Only
        NumPy and torch: `keras.utils.set_random_seed` also resets TensorFlow's seed, which clears its
        kernel caches and measurably slows the next steps (and TensorFlow's shuffle is fixed already).
        """
        _seed_epoch(self.seed, epoch)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        run, job = self.run, self.job
        seen = len(run.losses)
        _, new = read_steps(logs or {}, seen, self.compiled.recorder.ring_size)
        new = new[: job.num_steps - seen]
        state = "running"
        for loss in new:
            run.losses.append(float(loss))
            if not math.isfinite(loss):
                run.stop_reason, state = "nan", "nan"
                break
            smoothed = self.smoother.push(float(loss))
            threshold = job.spec.sweep.divergence_threshold if self.candidate is None else None  # see confirm_runs
            if threshold is not None and smoothed > threshold * self.best:
                run.stop_reason, state = "diverged", "diverged"
                break
            self.best = min(self.best, smoothed)
        added = len(run.losses) - seen
        run.lrs.extend(float(v) for v in self.lrs[seen : seen + added])
        val = None
        if run.val_losses is not None:
            val = [None] * (added - 1) + [self._validation_loss()] if added else []
            run.val_losses.extend(val)
        if state == "running" and len(run.losses) >= job.num_steps:
            state = "done"
        job.done += added
        reason = self._report(seen, added, val, state)
        if reason:
            run.stop_reason = job.stopped = reason
        if state != "running" or reason:
            self.model.stop_training = True

    def _report(self, seen: int, added: int, val: list[float | None] | None, state: str) -> str | None:
        """Hand the chunk to the hook. An exception there is the caller's own (Redis, a bug), never
        the training configuration's: it is kept, training stops, and `run` re-raises it as it is."""
        if self.job.on_chunk is None:
            return None
        run = self.run
        chunk = Chunk(
            arm_index=self.arm_index, arm_label=self.label, repeat=self.repeat, step_start=seen,
            lrs=run.lrs[seen:], losses=rules.json_safe(run.losses[seen:]), val_losses=rules.json_safe(val),
            steps_done=len(run.losses), steps_total=self.job.num_steps,
            job_steps_done=self.job.done, job_steps_total=self.job.total, state=state,  # type: ignore[arg-type]
            candidate=self.candidate,
        )
        try:
            return self.job.on_chunk(chunk)
        except Exception as exc:
            self.job.hook_error = exc
            return "hook_failed"

    def _validation_loss(self) -> float:
        """Loss on the fixed held-out subset with the weights after the chunk's last step (data loss only)."""
        return held_out_loss(self.model, self.job.data)


# --------------------------------------------------------------------------- compiled models


@dataclass
class _Compiled:
    """A model compiled for one arm, with what `reset` needs to make a run independent of earlier ones."""

    model: keras.Model
    recorder: StepLossRecorder
    optimizer_start: list[np.ndarray]

    def reset(self, weights: list[np.ndarray], lr: float | None = None) -> None:
        """Back to `weights` with fresh optimizer slots (at the constant `lr` of a confirm model)."""
        for variable, value in zip(self.model.variables, weights):
            variable.assign(value)
        for variable, value in zip(self.model.optimizer.variables, self.optimizer_start):
            variable.assign(value)
        if lr is not None:
            self.model.optimizer.learning_rate.assign(lr)
        self.recorder.restart()


_compiled_cache: OrderedDict[str, _Compiled] = OrderedDict()


def _compiled(config: dict, spec: JobSpec, caps: Settings, arm: OptimizerArm, num_steps: int, chunk: int,
              losses: list[Any], *, constant: bool = False) -> _Compiled:
    """The compiled model for this arm, from the per-process cache when an equal one was compiled before.

    `constant`: for confirm candidates, a learning-rate variable instead of the range-test schedule, so
    one compiled model trains every candidate of the arm (`_Compiled.reset` sets the LR).
    """
    sweep = spec.sweep
    schedule = "constant" if constant else [sweep.start_lr, sweep.end_lr, sweep.mode]
    key = json.dumps([config, spec.loss, spec.loss_config, spec.loss_weights, arm.name, arm.params, schedule, num_steps,
                      chunk, sweep.jit_compile, sweep.mixed_precision, keras.backend.backend()], sort_keys=True)
    if key in _compiled_cache:
        _compiled_cache.move_to_end(key)
        return _compiled_cache[key]
    model = build_model(config, caps, mixed_precision=sweep.mixed_precision)
    learning_rate = sweep.start_lr if constant else RangeTestSchedule(sweep.start_lr, sweep.end_lr, num_steps, sweep.mode)
    optimizer = _optimizer(arm, learning_rate)
    jit: bool | str = True if sweep.jit_compile else ("auto" if keras.backend.backend() == "jax" else False)
    model.compile(optimizer=optimizer, loss=_unwrap(losses), loss_weights=spec.loss_weights, steps_per_execution=chunk,
                  jit_compile=jit)
    recorder = install(model, chunk)
    model.optimizer.build(model.trainable_variables)
    compiled = _Compiled(model, recorder, [keras.ops.convert_to_numpy(v.value) for v in model.optimizer.variables])
    _compiled_cache[key] = compiled
    while len(_compiled_cache) > COMPILED_CACHE_ENTRIES:
        _compiled_cache.popitem(last=False)
    return compiled


def _optimizer(arm: OptimizerArm, learning_rate: float | RangeTestSchedule) -> keras.optimizers.Optimizer:
    cls = getattr(keras.optimizers, OPTIMIZER_CLASS_OF.get(arm.name, ""), None)
    if cls is None:
        raise ConfigInvalid(f"unknown optimizer {arm.name!r}")
    try:
        return cls(learning_rate=learning_rate, **arm.params)
    except (TypeError, ValueError) as exc:
        raise ConfigInvalid(f"optimizer {arm.name!r} rejected its params {arm.params}: {exc}",
                            optimizer=arm.name) from None


def _losses(spec: JobSpec, outputs: list[str]) -> list[Any]:
    """One Keras loss per model output, in the model's output order: built from its Keras class with its
    `loss_config` settings (`from_logits=True`) when it has some, else by its identifier."""
    # A loss object names exactly the outputs: `vet_spec` checked it against the config's output layers.
    names = [spec.loss[o] for o in outputs] if isinstance(spec.loss, dict) else [spec.loss] * len(outputs)
    config = spec.loss_config or {}
    settings = [config.get(o) for o in outputs] if isinstance(spec.loss, dict) else [config] * len(outputs)
    try:
        return [getattr(keras.losses, LOSS_CLASS_OF[name])(**options) if options else keras.losses.get(name)
                for name, options in zip(names, settings)]
    except (ValueError, TypeError, AttributeError) as exc:  # a Keras that drops a loss or a setting we list
        raise ConfigInvalid(f"this worker's Keras does not take the loss {names} with {spec.loss_config}: {exc}",
                            loss=names) from None


def _unwrap(parts: list[Any]) -> Any:
    """A single input, output or loss as itself (what a one-input model's `fit` is fastest with), else the list."""
    return parts[0] if len(parts) == 1 else list(parts)


# --------------------------------------------------------------------------- data order and seeds


def _epochs(data: Prepared, batch_size: int, num_steps: int) -> tuple[Any, Any, int, int | None]:
    """Arrays and `fit` arguments for `num_steps` steps of whole batches, `fit` reshuffling every epoch.

    The rows are cut to a whole number of batches (a view, no copy), because a ragged last batch
    would be a smaller, noisier step. `steps_per_epoch` is passed only for a single short epoch:
    with it, Keras carries one iterator across epochs and runs out of array data.
    """
    per_epoch = len(data) // batch_size
    rows = per_epoch * batch_size
    x, y = _unwrap([a[:rows] for a in data.x]), _unwrap([a[:rows] for a in data.y])
    if num_steps <= per_epoch:
        return x, y, 1, num_steps
    return x, y, -(-num_steps // per_epoch), None


def _seed_epoch(seed: int, epoch: int) -> None:
    """The NumPy (and torch) seed of one epoch's shuffle; see `_Monitor.on_epoch_begin`."""
    epoch_seed = (seed * 7919 + epoch) % 2**31
    np.random.seed(epoch_seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(epoch_seed)


def _first_batch(x: Any, y: Any, batch_size: int, steps_per_epoch: int | None, seed: int) -> list[np.ndarray]:
    """The first batch `fit` will draw for this seed, drawn the way `fit` draws it (Keras's own data
    adapter, seeded as `_Job.run` and `_Monitor.on_epoch_begin` seed `fit`), for the run's fingerprint.

    The caller seeds again before `fit`, so drawing it here does not move `fit`'s order.
    `tests/worker/engine/test_fanout_engine.py` checks it is the batch of the run's first recorded loss.
    """
    from keras.src.trainers.data_adapters import get_data_adapter  # Keras's private adapter: the one `fit` uses

    keras.utils.set_random_seed(seed)
    adapter = get_data_adapter(x, y, batch_size=batch_size, steps_per_epoch=steps_per_epoch, shuffle=True)
    if keras.backend.backend() == "tensorflow":
        batch = next(iter(adapter.get_tf_dataset()))
    else:
        _seed_epoch(seed, 0)
        batch = next(iter(adapter.get_numpy_iterator()))
    return [np.asarray(part) for part in keras.tree.flatten(batch)]


def _digest(arrays: list[np.ndarray]) -> str:
    """Short sha256 of the arrays' bytes (shapes and dtypes included): equal digests, equal arrays."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _seeded_model(config: dict, caps: Settings, seed: int, mixed_precision: bool) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_model(config, caps, mixed_precision=mixed_precision)


def _variables(model: keras.Model) -> list[np.ndarray]:
    """Every variable's value (weights, BatchNorm statistics, dropout seed states): a run's starting point."""
    return [keras.ops.convert_to_numpy(v.value) for v in model.variables]


def _variables_at_end(model: keras.Model, start: list[np.ndarray]) -> dict[str, str]:
    """A run's `engine.runs[].variables`: `_digest`s of every variable at its start (`arms[].fingerprint`'s
    `initial_weights`) and at its end, and, for a model with layers marked `trainable: false`, of those
    layers' variables (kernels and BatchNormalization statistics) at the start and the end. Equal
    `frozen_initial` and `frozen_final` show through the API that frozen layers stayed frozen."""
    final = _variables(model)
    out = {"initial": _digest(start), "final": _digest(final)}
    frozen_ids = {id(v) for layer in model._flatten_layers(include_self=False) if not layer.trainable
                  for v in layer.variables}
    frozen = [i for i, v in enumerate(model.variables) if id(v) in frozen_ids]
    if frozen:
        out["frozen_initial"] = _digest([start[i] for i in frozen])
        out["frozen_final"] = _digest([final[i] for i in frozen])
    return out


def _chunk_size(num_steps: int, requested: int | None, validation: bool) -> int:
    chunk = requested or min(MAX_STEPS_PER_EXECUTION, max(1, num_steps // 10))
    if validation:
        chunk = min(chunk, max(1, num_steps // MIN_VALIDATION_POINTS))
    return max(1, min(chunk, num_steps))


# --------------------------------------------------------------------------- results


def _check_caps(spec: JobSpec, caps: Settings, train_samples: int | None = None) -> None:
    """The API checked what it could; epochs-sized sweeps are checked here, once the data size is known."""
    for violation in cap_violations(spec, caps, train_samples):
        raise CapExceeded(violation.message, cap=violation.cap, limit=violation.limit, value=violation.value)


def _is_oom(exc: BaseException) -> bool:
    """Out-of-memory across backends: TF ResourceExhaustedError, XLA RESOURCE_EXHAUSTED, torch OOM."""
    name = type(exc).__name__
    text = str(exc)
    return (name in ("ResourceExhaustedError", "OutOfMemoryError", "MemoryError")
            or "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower())


def _device() -> str:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return gpus[0].name.removeprefix("/device:") if gpus else "CPU:0"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform.upper()}:{device.id}"
    if backend == "torch":
        import torch

        return "GPU:0" if torch.cuda.is_available() else "CPU:0"
    return "CPU:0"
