"""The sweep engine: spec + arrays in, curves and suggestions out. Pure Keras and NumPy.

No Celery, Redis or HTTP here, so a notebook, the benchmarks and the worker tasks all call the same
code. It imports `lrrt` (spec, settings, vetting, problems, suggestions) and nothing above it.

Entry point (import it explicitly, it imports Keras)::

    from worker.engine.sweep import run_sweep
    result = run_sweep(spec, data_root=settings.data_root, on_chunk=hook, caps=settings)

`on_chunk(chunk: Chunk) -> str | None` is called between `steps_per_execution` chunks with the new
points of one arm; returning a reason ("cancelled", "time_limit") stops the sweep cooperatively and
`run_sweep` returns the partial result with `stopped` set. Failures are `lrrt.problems.EngineError`
subclasses that carry a problem object telling the user what to change; any other exception is a
failure of our own stack, which the task layer reports as `internal` (`faults`).

Modules: `models` (safe build), `data` (dataset arrays, per-process cache), `targets` (targets against
outputs), `schedule` (the LR ramp), `recorder` (per-step losses on the device), `scoring` (held-out loss),
`faults` (the request's fault or ours), `sweep` (run_sweep).
"""
