"""Which queue a submitted job goes to: the backends the live workers run, read from their heartbeats.

Each worker's heartbeat (`worker/heartbeat.py`) carries its Keras backend and device; a heartbeat
without them comes from a worker older than the choice of backends, which ran TensorFlow. The rule
itself is the core's (`worker.core.backends.route`), so `bench/peers.py` measures the same choice.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from service.problems import ProblemError
from worker.core.backends import DEFAULT_BACKEND, Choice, route
from worker.core.keys import Keys


def live_backends(text_redis: redis.Redis, keys: Keys) -> dict[str, str]:
    """{backend: `gpu` if any of its live workers has a GPU, else `cpu`} over the unexpired heartbeats."""
    names = list(text_redis.scan_iter(match=keys.worker_heartbeat("") + "*", count=500))
    live: dict[str, str] = {}
    for raw in text_redis.mget(names) if names else []:
        try:
            info = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            info = {}
        info = info if isinstance(info, dict) else {}
        backend = str(info.get("backend") or DEFAULT_BACKEND)
        live[backend] = "gpu" if info.get("device") == "gpu" or live.get(backend) == "gpu" else "cpu"
    return live


def choose_backend(requested: str, model: dict[str, Any], text_redis: redis.Redis, keys: Keys) -> Choice:
    """The backend the job runs on; a 422 `backend-unavailable` naming the served backends when it asks
    for one that no live worker runs."""
    live = live_backends(text_redis, keys)
    choice = route(requested, model, live)
    if choice is None:
        served = sorted(live)
        raise ProblemError(
            422, "backend-unavailable",
            f"No live worker runs the {requested} backend here; this deployment serves {', '.join(served)} right now. "
            "Send backend 'auto' (or one of those), or ask the operator to start a worker with "
            f"`lrrt worker --backend {requested}`.",
            title="Backend not served", requested=requested, served=served,
        )
    return choice
