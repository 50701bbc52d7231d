"""Which Keras backends have live workers, read from the workers' heartbeats.

Each worker's heartbeat (`worker/heartbeat.py`) carries its Keras backend and device. The API routes
`auto` jobs by it (`service/routing.py`) and the reaper re-routes an `auto` job stranded on a backend
whose workers are gone (`lrrt.reaper.reroute_stranded`): both read it here.
"""

from __future__ import annotations

from typing import Any

#: Seconds a worker's heartbeat lives unless beaten again (`worker/heartbeat.py` beats every 10 s): a
#: worker silent this long counts as gone.
HEARTBEAT_TTL_S = 30


def live_backends(heartbeats: list[dict[str, Any]]) -> dict[str, str]:
    """{backend: `gpu` if any of its live workers has a GPU, else `cpu`} over the unexpired heartbeats
    (`Fleet.heartbeats`)."""
    live: dict[str, str] = {}
    for info in heartbeats:
        backend = info.get("backend")
        if not isinstance(backend, str):  # not a heartbeat of ours: no backend to count it for
            continue
        live[backend] = "gpu" if info.get("device") == "gpu" or live.get(backend) == "gpu" else "cpu"
    return live
