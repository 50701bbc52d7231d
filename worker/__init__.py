"""lrrt's worker process, in layers that import in one direction only (checked by import-linter):

- `worker.engine`: the Keras sweep. Imports `lrrt`, never the task layer or the service.
- `worker.tasks` (with `worker.heartbeat`): the Celery tasks that glue the engine to the job store.

The contracts live in pyproject.toml (`[tool.importlinter]`); `.ci/run` runs `lint-imports`.
"""
