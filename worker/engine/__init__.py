"""The sweep engine: spec + arrays in, curves, suggestions and charts out. Pure Keras and NumPy.

No Celery, Redis or HTTP here, so a notebook, the benchmarks and the worker tasks all call the same
code. Importing this package must not import Keras: `allowlist`, `legacy`, `errors`, `suggestions` and
`charts` are used by the API process, which never imports TensorFlow or Keras.

Entry point (import it explicitly, it imports Keras)::

    from worker.engine.sweep import run_sweep
    result = run_sweep(spec, data_root=Path("lrrt-data"), on_chunk=hook)

`on_chunk(chunk: Chunk) -> str | None` is called between `steps_per_execution` chunks with the new
points of one arm; returning a reason ("cancelled", "time_limit") stops the sweep cooperatively and
`run_sweep` returns the partial result. Failures are `worker.engine.errors.EngineError` subclasses that
carry a problem object telling the user what to change.
"""
