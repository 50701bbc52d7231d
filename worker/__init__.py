"""lrrt worker side: the job spec, settings, Redis key layout, the sweep engine and the Celery tasks.

Importing this package (or `worker.spec`, `worker.settings`, `worker.keys`, `worker.engine.allowlist`)
must not import Keras or TensorFlow: the API process imports them.
"""
