"""Which Keras backends have live workers, read from the workers' heartbeats.

Each worker's heartbeat (`worker/heartbeat.py`) carries its Keras backend and device. The API routes
`auto` jobs by it (`service/routing.py`) and the reaper re-routes an `auto` job stranded on a backend
whose workers are gone (`lrrt.reaper.reroute_stranded`): both read it here.
"""

from __future__ import annotations

import json

import redis

from lrrt.store.keys import Keys

#: Seconds a worker's heartbeat lives unless beaten again (`worker/heartbeat.py` beats every 10 s): a
#: worker silent this long counts as gone.
HEARTBEAT_TTL_S = 30


def live_backends(r: redis.Redis, keys: Keys) -> dict[str, str]:
    """{backend: `gpu` if any of its live workers has a GPU, else `cpu`} over the unexpired heartbeats."""
    names = list(r.scan_iter(match=keys.worker_heartbeat("") + "*", count=500))
    live: dict[str, str] = {}
    for raw in r.mget(names) if names else []:
        if raw is None:  # expired between the scan and the read
            continue
        try:
            info = json.loads(raw)
        except ValueError:  # not a heartbeat
            continue
        backend = info.get("backend") if isinstance(info, dict) else None
        if not isinstance(backend, str):
            continue
        live[backend] = "gpu" if info.get("device") == "gpu" or live.get(backend) == "gpu" else "cpu"
    return live
