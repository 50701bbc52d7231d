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


def add_steps(client: redis.Redis, keys: Keys, steps: int, seconds: float) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(keys.stats(), "steps", steps)
    pipe.hincrbyfloat(keys.stats(), "sweep_seconds", seconds)
    pipe.execute()


def add_finished(client: redis.Redis, keys: Keys, status: str, duration_s: float | None) -> None:
    """Count a job that reached `status`; `duration_s` (claim to finish) feeds the histogram."""
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(keys.stats(), f"jobs_{status}", 1)
    if duration_s is not None:
        pipe.hincrbyfloat(keys.stats(), "duration_sum", duration_s)
        pipe.hincrby(keys.stats(), "duration_count", 1)
        for bound in (*DURATION_BUCKETS, float("inf")):
            if duration_s <= bound:
                pipe.hincrby(keys.stats(), bucket_field(bound), 1)
    pipe.execute()


def add_stuck(client: redis.Redis, keys: Keys) -> None:
    """Count a run the watchdog declared stuck (`stuck_runs`)."""
    client.hincrby(keys.stats(), "stuck_runs", 1)
