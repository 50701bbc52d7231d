"""lrrt's worker side, in three layers that import in one direction only (checked by import-linter):

- `worker.core`: pure Python shared with the HTTP service (spec, settings, keys, store, queue,
  problems, results, suggestions, model and dataset vetting). No Keras, TensorFlow or Celery worker.
- `worker.engine`: the Keras sweep. Imports the core, never the task layer or the service.
- `worker.tasks` (with `worker.heartbeat`): the Celery tasks that glue the two to Redis.

The contracts live in pyproject.toml (`[tool.importlinter]`); `.ci/run` runs `lint-imports`.
"""
