"""Counters the workers add to and `/metrics` exports, in the `Keys.stats()` hash.

Workers are many processes on many machines, so the counters live in Redis rather than in a
process-local Prometheus registry: `steps` and `sweep_seconds` (steps/s is their rate ratio),
`jobs_<status>`, `stuck_runs`, and a job-duration histogram as `duration_sum`, `duration_count` and cumulative
`duration_le_<bound>` buckets (bounds below, the last one `+Inf`).
"""

from __future__ import annotations

import redis

from lrrt.store.keys import Keys

#: Upper bounds (seconds) of the job-duration histogram buckets; `+Inf` is always added.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 3600)


def bucket_field(bound: float) -> str:
    """`duration_le_5`, ..., `duration_le_+Inf`."""
    return "duration_le_+Inf" if bound == float("inf") else f"duration_le_{bound:g}"


class Stats:
    """The fleet's counters (`JobStore.stats`)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._key = keys.stats()

    def add_steps(self, steps: int, seconds: float) -> None:
        pipe = self._r.pipeline(transaction=False)
        pipe.hincrby(self._key, "steps", steps)
        pipe.hincrbyfloat(self._key, "sweep_seconds", seconds)
        pipe.execute()

    def add_finished(self, status: str, duration_s: float | None) -> None:
        """Count a job that reached `status`; `duration_s` (claim to finish) feeds the histogram."""
        pipe = self._r.pipeline(transaction=False)
        pipe.hincrby(self._key, f"jobs_{status}", 1)
        if duration_s is not None:
            pipe.hincrbyfloat(self._key, "duration_sum", duration_s)
            pipe.hincrby(self._key, "duration_count", 1)
            for bound in (*DURATION_BUCKETS, float("inf")):
                if duration_s <= bound:
                    pipe.hincrby(self._key, bucket_field(bound), 1)
        pipe.execute()

    def add_stuck(self) -> None:
        """Count a run the watchdog declared stuck (`stuck_runs`)."""
        self._r.hincrby(self._key, "stuck_runs", 1)

    def read(self) -> dict[str, float]:
        """Every counter by its field name (absent ones were never counted: callers read them as 0)."""
        return {_text(k): float(v) for k, v in self._r.hgetall(self._key).items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
