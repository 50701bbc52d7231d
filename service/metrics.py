"""Prometheus metrics: this process's HTTP traffic, plus the fleet's state read from Redis at scrape time.

Each app gets its own `CollectorRegistry`, so several apps in one process (tests, the standalone
mode) never collide on metric names. Request metrics are labelled by route *template*
(`/v1/jobs/{job_id}`), never the raw path, to keep cardinality bounded. Jobs, queue depth and the
workers' counters live in Redis (workers are other processes on other machines), so a custom
collector reads them on each scrape; the job census scans keys, so it is cached for a few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lrrt.routing import BACKENDS, queue_for
from lrrt.status import STATUSES
from lrrt.store.fleet import Fleet
from lrrt.store.jobs import JobStore
from lrrt.store.stats import DURATION_BUCKETS, bucket_field

log = logging.getLogger(__name__)

#: Seconds a job census (a SCAN over job records) is reused across scrapes.
COUNTS_CACHE_S = 5.0


class FleetCollector(Collector):
    """Jobs by status, queue depth, sweep throughput and job durations, from Redis."""

    def __init__(self, store: JobStore, fleet: Fleet, queue: str) -> None:
        self.store = store
        self.fleet = fleet
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
                                value=len(self.fleet.live_workers()))
        yield GaugeMetricFamily("lrrt_workers_stuck", "Workers whose watchdog replaced a pool child stuck on a run "
                                "in the last 15 minutes.", value=len(self.fleet.stuck()))
        depth = GaugeMetricFamily("lrrt_queue_depth", "Messages waiting in each backend's Celery queue.",
                                  labels=["backend", "queue"])
        for backend in BACKENDS:  # each backend's workers consume only their own queue (lrrt.routing)
            queue = queue_for(self.queue, backend)
            depth.add_metric([backend, queue], self.fleet.queue_depth(queue))
        yield depth
        stats = self.store.stats.read()
        steps, seconds = stats.get("steps", 0.0), stats.get("sweep_seconds", 0.0)
        yield CounterMetricFamily("lrrt_sweep_steps", "Sweep steps run by all workers.", value=steps)
        yield CounterMetricFamily("lrrt_sweep_seconds", "Seconds workers spent stepping sweeps; "
                                  "rate(steps)/rate(seconds) is steps per second.", value=seconds)
        yield GaugeMetricFamily("lrrt_sweep_steps_per_second", "Lifetime mean sweep steps per second of stepping.",
                                value=steps / seconds if seconds else 0.0)
        yield CounterMetricFamily("lrrt_stuck_runs", "Runs the watchdog declared stuck (no chunk for too long).",
                                  value=stats.get("stuck_runs", 0.0))
        finished = CounterMetricFamily("lrrt_jobs_finished", "Jobs that reached a terminal status.",
                                       labels=["status"])
        for status in STATUSES[2:]:
            finished.add_metric([status], stats.get(f"jobs_{status}", 0.0))
        yield finished
        yield self._durations(stats)

    @staticmethod
    def _durations(stats: dict[str, float]) -> HistogramMetricFamily:
        """Every bucket the workers count into (`lrrt.store.stats.DURATION_BUCKETS`), zeros included."""
        buckets = [(floatToGoString(bound), stats.get(bucket_field(bound), 0.0)) for bound in DURATION_BUCKETS]
        buckets.append(("+Inf", stats.get("duration_count", 0.0)))
        return HistogramMetricFamily("lrrt_job_duration_seconds", "Job run time, claim to finish.",
                                     buckets=buckets, sum_value=stats.get("duration_sum", 0.0))


class Metrics:
    """The app's registry and HTTP instruments; `render()` is the /metrics body."""

    def __init__(self, store: JobStore, fleet: Fleet, queue: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lrrt_http_requests", "HTTP requests answered.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("lrrt_http_request_duration_seconds", "Time to answer HTTP requests.",
                                 ["method", "route"], registry=self.registry)
        self.registry.register(FleetCollector(store, fleet, queue))

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
