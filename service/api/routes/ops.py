"""Operations: liveness, readiness and metrics.

These routes take no API key: orchestrators and Prometheus probe them, and they expose no job data.
"""

from __future__ import annotations

from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from lrrt.store.fleet import Fleet
from service.metrics import Metrics
from service.problems import ProblemError, problem_responses

router = APIRouter(tags=["operations"])


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_fleet(request: Request) -> Fleet:
    return request.app.state.fleet


@router.get("/healthz", summary="Liveness", description="200 while the process serves requests; checks nothing else.")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    description="200 when Redis answers and at least one worker has sent a heartbeat recently; 503 naming what is "
    "missing otherwise. `stuck` lists the workers whose watchdog replaced a pool child stuck on a run recently.",
    responses=problem_responses({503: "Redis unreachable, or no live worker."}),
)
def readyz(fleet: Annotated[Fleet, Depends(get_fleet)]) -> dict[str, Any]:
    try:
        fleet.ping()
        workers = fleet.live_workers()
        stuck = fleet.stuck()
    except redis.RedisError as exc:
        raise ProblemError(503, "not-ready", f"Redis is not reachable ({exc}); check LRRT_REDIS_URL and the Redis "
                           "server.", title="Not ready", headers={"Retry-After": "5"}) from None
    if not workers:
        raise ProblemError(503, "not-ready", "No live worker: jobs would wait in the queue. Start one with "
                           "`lrrt worker` (against the same LRRT_REDIS_URL and LRRT_KEY_PREFIX).",
                           title="Not ready", headers={"Retry-After": "5"})
    return {"status": "ready", "redis": "ok", "workers": workers, "stuck": stuck}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Requests by route and status with latency, jobs by status, queue depth, sweep steps and seconds "
    "(steps/s), finished jobs and the job-duration histogram.",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}},
)
def metrics(registry: Annotated[Metrics, Depends(get_metrics)]) -> Response:
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
