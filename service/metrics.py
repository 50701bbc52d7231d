"""Prometheus metrics: this process's HTTP traffic, plus the fleet's state read from Redis at scrape time.

Each app gets its own `CollectorRegistry`, so several apps in one process (tests, the standalone
mode) never collide on metric names. Request metrics are labelled by route *template*
(`/v1/jobs/{job_id}`), never the raw path, to keep cardinality bounded. Jobs, queue depth and the
workers' counters live in Redis (workers are other processes on other machines), so a custom
collector reads them on each scrape; the job census scans keys, so it is cached for a few seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any, cast

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lrrt.routing import BACKENDS, queue_for
from lrrt.status import STATUSES
from lrrt.store.jobs import JobStore
from lrrt.store.keys import Keys
from lrrt.store.stats import DURATION_BUCKETS, bucket_field

log = logging.getLogger(__name__)

#: Seconds a job census (a SCAN over job records) is reused across scrapes.
COUNTS_CACHE_S = 5.0


def live_workers(text_redis: redis.Redis, keys: Keys) -> list[str]:
    """Node names of the workers whose heartbeat key has not expired (see worker/heartbeat.py)."""
    prefix = keys.worker_heartbeat("")
    return sorted(key.removeprefix(prefix) for key in text_redis.scan_iter(match=prefix + "*", count=500))


def stuck_workers(text_redis: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """What the watchdogs reported (worker/tasks.py `_Lease`): each worker that replaced a pool child
    stuck on a run in the last 15 minutes, with that run."""
    prefix = keys.worker_stuck("")
    notes = [text_redis.get(key) for key in text_redis.scan_iter(match=prefix + "*", count=500)]
    return sorted((json.loads(n) for n in notes if n), key=lambda n: n.get("worker") or "")


class FleetCollector(Collector):
    """Jobs by status, queue depth, sweep throughput and job durations, from Redis."""

    def __init__(self, store: JobStore, text_redis: redis.Redis, queue: str) -> None:
        self.store = store
        self.r = text_redis
        self.keys: Keys = store.k
        self.queue = queue
        self._counts: tuple[float, dict[str, int]] = (0.0, {})

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("lrrt_redis_up", "1 when the last scrape could read Redis.")
        try:
            metrics = list(self._from_redis())
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreadable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _job_counts(self) -> dict[str, int]:
        stamp, counts = self._counts
        if time.monotonic() - stamp > COUNTS_CACHE_S:
            counts = self.store.counts_by_status()
            self._counts = (time.monotonic(), counts)
        return counts

    def _from_redis(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("lrrt_jobs", "Jobs currently stored, by status.", labels=["status"])
        counts = self._job_counts()
        for status in STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily("lrrt_workers_alive", "Workers with a live heartbeat in Redis.",
                                value=len(live_workers(self.r, self.keys)))
        yield GaugeMetricFamily("lrrt_workers_stuck", "Workers whose watchdog replaced a pool child stuck on a run "
                                "in the last 15 minutes.", value=len(stuck_workers(self.r, self.keys)))
        depth = GaugeMetricFamily("lrrt_queue_depth", "Messages waiting in each backend's Celery queue.",
                                  labels=["backend", "queue"])
        for backend in BACKENDS:  # each backend's workers consume only their own queue (lrrt.routing)
            queue = queue_for(self.queue, backend)
            depth.add_metric([backend, queue], self.r.llen(queue))
        yield depth
        stats = cast(dict[str, str], self.r.hgetall(self.keys.stats()))
        steps, seconds = float(stats.get("steps", 0)), float(stats.get("sweep_seconds", 0))
        yield CounterMetricFamily("lrrt_sweep_steps", "Sweep steps run by all workers.", value=steps)
        yield CounterMetricFamily("lrrt_sweep_seconds", "Seconds workers spent stepping sweeps; "
                                  "rate(steps)/rate(seconds) is steps per second.", value=seconds)
        yield GaugeMetricFamily("lrrt_sweep_steps_per_second", "Lifetime mean sweep steps per second of stepping.",
                                value=steps / seconds if seconds else 0.0)
        yield CounterMetricFamily("lrrt_stuck_runs", "Runs the watchdog declared stuck (no chunk for too long).",
                                  value=float(stats.get("stuck_runs", 0)))
        finished = CounterMetricFamily("lrrt_jobs_finished", "Jobs that reached a terminal status.",
                                       labels=["status"])
        for status in STATUSES[2:]:
            finished.add_metric([status], float(stats.get(f"jobs_{status}", 0)))
        yield finished
        yield self._durations(stats)

    @staticmethod
    def _durations(stats: dict[str, str]) -> HistogramMetricFamily:
        """Every bucket the workers count into (`lrrt.store.stats.DURATION_BUCKETS`), zeros included."""
        buckets = [(floatToGoString(bound), float(stats.get(bucket_field(bound), 0))) for bound in DURATION_BUCKETS]
        buckets.append(("+Inf", float(stats.get("duration_count", 0))))
        return HistogramMetricFamily("lrrt_job_duration_seconds", "Job run time, claim to finish.",
                                     buckets=buckets, sum_value=float(stats.get("duration_sum", 0)))


class Metrics:
    """The app's registry and HTTP instruments; `render()` is the /metrics body."""

    def __init__(self, store: JobStore, text_redis: redis.Redis, queue: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lrrt_http_requests", "HTTP requests answered.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("lrrt_http_request_duration_seconds", "Time to answer HTTP requests.",
                                 ["method", "route"], registry=self.registry)
        self.registry.register(FleetCollector(store, text_redis, queue))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "<unmatched>")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
