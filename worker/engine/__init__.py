"""The sweep engine: spec + arrays in, curves and suggestions out. Pure Keras and NumPy.

No Celery, Redis or HTTP here, so a notebook, the benchmarks and the worker tasks all call the same
code. It imports `lrrt` (spec, settings, vetting, problems, suggestions) and nothing above it.

Entry points (import them explicitly, they import Keras): `KerasEngine`, the coordinator's engine
(`lrrt.coordinator`: one run per call, `sweep_runs` or `confirm_runs`), and the whole job in this
process through that coordinator::

    from worker.engine.sweep import run_sweep
    result = run_sweep(spec, data_root=settings.data_root, on_chunk=hook, caps=settings)

`on_chunk(chunk: Chunk) -> str | None` is called between `steps_per_execution` chunks with the new
points of one arm; returning a stop reason cancels the job cooperatively and `run_sweep` returns the
partial result with `stopped` set. Failures are `lrrt.problems.EngineError` subclasses that carry a
problem object telling the user what to change; any other exception is a failure of our own stack,
which the task layer reports as `internal` (`faults`).

Modules: `models` (safe build), `data` and `sources` (dataset arrays, per-process cache), `weights` (the
user's weights, checked), `targets` (targets against outputs), `schedule` (the LR ramp), `recorder`
(per-step losses on the device), `scoring` (held-out loss), `faults` (the request's fault or ours),
`sweep` (the runs, `KerasEngine`, `run_sweep`).
"""
