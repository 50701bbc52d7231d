"""Which queue a submitted job goes to: the backends the live workers run, read from their heartbeats
(`lrrt.liveness`). The rule itself is the core's (`lrrt.routing.route`), so
`bench/peers.py` measures the same choice.

The heartbeats are scanned at most once per `LIVE_BACKENDS_MAX_AGE_S` per API process (`LiveBackends`),
not on every submission: a SCAN over the key space costs Redis more than the rest of a submit. Workers
beat every 10 s with a 30 s TTL, so liveness is already up to 30 s old when read; the cache adds at
most its age to that for the jobs it routes. A 422 is never answered from the cache: a job asking for
a backend the cached set lacks is routed again from a fresh scan, so a worker that started within the
cache age is found. An `auto` job the cache sent to a backend whose workers have just gone is not
stranded: the reaper moves it to a live backend (`lrrt.reaper.reroute_stranded`).
"""

from __future__ import annotations

import threading
import time

from lrrt.liveness import live_backends
from lrrt.routing import Choice, route
from lrrt.spec import JobSpec
from lrrt.store.fleet import Fleet
from service.problems import ProblemError

LIVE_BACKENDS_MAX_AGE_S = 5.0


class LiveBackends:
    """`live_backends`, read again only when the last read is older than `max_age_s` (or when asked fresh)."""

    def __init__(self, fleet: Fleet, max_age_s: float = LIVE_BACKENDS_MAX_AGE_S) -> None:
        self.fleet, self.max_age_s = fleet, max_age_s
        self._lock = threading.Lock()  # submissions run in FastAPI's threadpool: one scan at a time refreshes
        self._read: tuple[float, dict[str, str]] | None = None

    def get(self, *, fresh: bool = False) -> dict[str, str]:
        with self._lock:
            if fresh or self._read is None or time.monotonic() - self._read[0] > self.max_age_s:
                self._read = (time.monotonic(), live_backends(self.fleet.heartbeats()))
            return dict(self._read[1])


def choose_backend(spec: JobSpec, live: LiveBackends) -> Choice:
    """The backend the job runs on; a 422 `backend-unavailable` naming the served backends when it asks
    for one that no live worker runs (checked on a fresh read of the heartbeats, never the cache)."""
    requested = spec.backend
    choice = route(requested, spec.model_summary, live.get(), spec.sweep.batch_size)
    if choice is not None:
        return choice
    served_now = live.get(fresh=True)
    choice = route(requested, spec.model_summary, served_now, spec.sweep.batch_size)
    if choice is None:
        served = sorted(served_now)
        raise ProblemError(
            422, "backend-unavailable",
            f"No live worker runs the {requested} backend here; this deployment serves {', '.join(served)} right now. "
            "Send backend 'auto' (or one of those), or ask the operator to start a worker with "
            f"`lrrt worker --backend {requested}`.",
            title="Backend not served", requested=requested, served=served,
        )
    return choice
