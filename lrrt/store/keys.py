"""The Redis key layout: the one place that knows how keys are spelled.

Everything lives under one prefix (`LRRT_KEY_PREFIX`, default `lrrt`) so that tests and several
deployments can share a Redis and clean up only their own keys (`SCAN prefix:*`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "lrrt"

    # --- jobs -------------------------------------------------------------------------------
    def job(self, job_id: str) -> str:
        """Hash: the job record (tenant, status, spec, timestamps, error, attempts, progress)."""
        return f"{self.prefix}:job:{job_id}"

    def result(self, job_id: str) -> str:
        """String: the result JSON (curves as float arrays, suggestions, engine info)."""
        return f"{self.prefix}:job:{job_id}:result"

    def events(self, job_id: str) -> str:
        """Stream: progress and status events; stream ids are the SSE event ids (Last-Event-ID)."""
        return f"{self.prefix}:job:{job_id}:events"

    def curves(self, job_id: str) -> str:
        """List of chunk JSONs (arm, repeat, step_start, lrs, losses, val_losses) recorded so far."""
        return f"{self.prefix}:job:{job_id}:curves"

    def cancel(self, job_id: str) -> str:
        """String flag: set when a cancel was requested; the worker checks it between chunks."""
        return f"{self.prefix}:job:{job_id}:cancel"

    def lease(self, job_id: str, run: int) -> str:
        """String with TTL: refreshed by the worker running one (arm, repeat) run of the job; its expiry
        means that worker died (or its run stopped reporting, see the watchdog, `worker.tasks._Lease`)."""
        return f"{self.lease_prefix(job_id)}:{run}"

    def lease_prefix(self, job_id: str) -> str:
        """What every run's lease key of the job starts with (the Lua scripts append `:<run>`)."""
        return f"{self.prefix}:job:{job_id}:lease"

    def tenant_jobs(self, tenant: str) -> str:
        """Sorted set job-id -> created timestamp, for newest-first listing."""
        return f"{self.prefix}:tenant:{tenant}:jobs"

    def tenant_unfinished(self, tenant: str) -> str:
        """Set of the tenant's queued and running job ids, for the unfinished-jobs cap."""
        return f"{self.prefix}:tenant:{tenant}:unfinished"

    def running(self) -> str:
        """Sorted set job-id -> start timestamp of every running job, scanned for expired leases."""
        return f"{self.prefix}:running"

    def idempotency(self, tenant: str, key: str) -> str:
        """String: JSON {job_id, body_sha256} for an Idempotency-Key."""
        return f"{self.prefix}:idem:{tenant}:{key}"

    # --- datasets ---------------------------------------------------------------------------
    def dataset(self, dataset_id: str) -> str:
        """Hash: uploaded dataset metadata (tenant, shapes, bytes, created_at)."""
        return f"{self.prefix}:dataset:{dataset_id}"

    def tenant_datasets(self, tenant: str) -> str:
        """Sorted set dataset-id -> created timestamp."""
        return f"{self.prefix}:tenant:{tenant}:datasets"

    # --- weights ----------------------------------------------------------------------------
    def weights(self, weights_id: str) -> str:
        """Hash: uploaded weights metadata (tenant, variables, bytes, sha256, created_at)."""
        return f"{self.prefix}:weights:{weights_id}"

    def tenant_weights(self, tenant: str) -> str:
        """Sorted set weights-id -> created timestamp."""
        return f"{self.prefix}:tenant:{tenant}:weights"

    # --- operations -------------------------------------------------------------------------
    def worker_heartbeat(self, hostname: str) -> str:
        """String with TTL: a live worker process (for /readyz)."""
        return f"{self.prefix}:worker:{hostname}"

    def worker_stuck(self, hostname: str) -> str:
        """String with TTL: JSON of the last run the worker's watchdog declared stuck (for /readyz, /metrics)."""
        return f"{self.prefix}:worker-stuck:{hostname}"

    def stats(self) -> str:
        """Hash of counters the workers add to and /metrics exports: `steps`, `sweep_seconds`,
        `jobs_<status>`, `duration_sum`, `duration_count`, `duration_le_<bound>` (cumulative buckets)."""
        return f"{self.prefix}:stats"

    def reaper_lock(self) -> str:
        """String with TTL: held by whichever process (API or worker) is reaping orphans right now."""
        return f"{self.prefix}:reaper-lock"

    def all_keys_pattern(self) -> str:
        return f"{self.prefix}:*"
