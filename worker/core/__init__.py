"""The pure-Python core that the HTTP service and the worker share.

What a valid job is (`spec`, `vetting`, `allowlist`, `legacy`), where it lives in Redis (`keys`,
`store`, `stats`), how it is queued (`queue`) and recovered (`reaper`), what went wrong (`problems`)
and what it produced (`progress` chunks, `results`, `suggestions`). Nothing here imports Keras,
TensorFlow or the Celery task module: the API process imports all of it and starts in about a second.
"""
