"""`/v1/jobs`: submit, poll, results, charts, live events, cancel, delete, list.

The job record in Redis (`lrrt.store.jobs.JobStore`) is the truth for every answer here; Celery is only
told to run a job, never asked about it. Routes that touch Redis are plain `def`s (FastAPI runs them
in its threadpool) because the store is the synchronous redis-py client the worker shares.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from lrrt.problems import QueueUnavailable
from lrrt.queue import enqueue
from lrrt.reaper import partial_or_none
from lrrt.records import JobRecord
from lrrt.routing import queue_for
from lrrt.status import TERMINAL, UNFINISHED
from lrrt.store.jobs import IdempotencyConflict, JobStore, TenantAtCapacity
from lrrt.vetting.datasets import is_id
from service.api.deps import CeleryDep, DatasetsDep, SettingsDep, StoreDep, TenantDep, WeightsDep
from service.api.schemas import Job, JobLinks, JobPage, JobStatus, Result
from service.problems import ProblemError, problem_responses
from service.routing import choose_backend
from service.submission import body_sha256, check_caps, check_dataset, check_model, check_weights, parse_spec, replay

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(
    {401: "No or wrong API key.", 422: "A parameter is invalid; `errors` says which."}))

#: Seconds a poller should wait before asking again, by status (terminal jobs do not change).
RETRY_AFTER_S = {"queued": 2, "running": 1}
#: How long one blocking read of a job's event stream waits before checking the job is still there.
EVENTS_BLOCK_MS = 5000
#: Seconds a client over its unfinished-jobs cap should wait.
CAPACITY_RETRY_S = 10
NOT_FOUND = problem_responses({404: "No such job for this tenant (another tenant's job answers the same)."})


def owned_job(
    job_id: Annotated[str, Path(description="The id POST /v1/jobs returned.")], tenant: TenantDep, store: StoreDep
) -> JobRecord:
    """The caller's job; unknown, malformed and other tenants' ids are all the same 404."""
    job = store.get(job_id, tenant=tenant) if is_id(job_id) else None
    if job is None:
        raise ProblemError(404, "job-not-found",
                           f"No job {job_id!r} here: check the id (GET /v1/jobs lists your jobs).")
    return job


OwnedJob = Annotated[JobRecord, Depends(owned_job)]


def job_resource(job: JobRecord, request: Request) -> Job:
    base = f"{request.scope.get('root_path', '')}/v1/jobs/{job.id}"
    return Job(
        **job.model_dump(include={"id", "status", "created_at", "started_at", "finished_at", "progress", "error",
                                  "labels", "attempts", "cancel_requested"}),
        spec=job.spec.model_dump(mode="json", exclude={"model"}),
        links=JobLinks(self=base, result=f"{base}/result", plot=f"{base}/plot.png", events=f"{base}/events",
                       cancel=f"{base}/cancel"),
    )


def poll_headers(job: JobRecord) -> dict[str, str]:
    """ETag from the record's version (bumped by every change), and Retry-After while it can still change."""
    headers = {"ETag": f'"{job.id}.{job.version}"'}
    if job.status in RETRY_AFTER_S:
        headers["Retry-After"] = str(RETRY_AFTER_S[job.status])
    return headers


def etag_matches(if_none_match: str, etag: str) -> bool:
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


async def read_body(request: Request) -> bytes:
    """The raw body, read on the event loop; parsing happens in the route (threadpool), see `parse_spec`."""
    return await request.body()


_JOBSPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}},
    }
}


@router.post(
    "",
    status_code=202,
    response_description="Accepted: the job is queued; `Location` names it.",
    summary="Submit a range test",
    description="Validates the spec (schema, model allow-list, caps, dataset, weights), writes a queued job and sends it "
    "to the workers. The body is a JobSpec. With `Idempotency-Key`, resending the same body returns the "
    "original job with 200; a different body under the same key is 422.",
    openapi_extra=_JOBSPEC_BODY,
    responses={
        200: {"model": Job, "description": "Idempotent replay: the job first created with this key and body."},
        **problem_responses({
            413: "Body over the size cap.",
            422: "Invalid spec, a rejected model (see `disallowed`), over a cap, unknown dataset, a backend no "
                 "live worker runs (`served` lists those that do), unknown or unusable weights, or an Idempotency-Key "
                 "reused with another body.",
            429: "Too many unfinished jobs for this tenant; see Retry-After.",
            503: "The queue is unreachable; the job was recorded as failed.",
        }),
    },
)
def submit_job(
    raw: Annotated[bytes, Depends(read_body)],
    request: Request,
    response: Response,
    tenant: TenantDep,
    store: StoreDep,
    datasets: DatasetsDep,
    weights: WeightsDep,
    settings: SettingsDep,
    celery: CeleryDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200,
                           description="Any unique string; retries with the same key and body do not duplicate the job.")
    ] = None,
) -> Job:
    spec = parse_spec(raw, settings)
    config = check_model(spec, settings)
    check_caps(spec, settings)
    check_dataset(spec, tenant, datasets, settings.data_root, config, settings)
    check_weights(spec, tenant, weights, settings)
    sha256 = body_sha256(spec)
    try:
        created = replay(store, tenant, idempotency_key, sha256)
        if created is None:  # routed once, here; the choice and its reason are kept on the record
            choice = choose_backend(spec, request.app.state.live_backends)
            created = store.create(
                tenant=tenant, spec=spec, max_unfinished=settings.max_unfinished_jobs,
                queue=queue_for(settings.queue, choice.backend), routing=choice,
                idempotency_key=idempotency_key, body_sha256=sha256,
            )
    except TenantAtCapacity as exc:
        raise ProblemError(
            429, "too-many-unfinished-jobs",
            f"You have {exc.unfinished} queued or running jobs, the most this server allows at once. Wait for "
            "some to finish (or cancel them), then resubmit.",
            headers={"Retry-After": str(CAPACITY_RETRY_S)},
        ) from None
    except IdempotencyConflict as exc:
        raise ProblemError(
            422, "idempotency-key-reused",
            f"Idempotency-Key {idempotency_key!r} was already used for job {exc.job_id} with a different body. "
            "Use a new key for a new job, or resend the original body unchanged.",
            title="Idempotency-Key reused with a different body", job_id=exc.job_id,
        ) from None
    job = created.job
    if created.replayed:
        response.status_code = 200
    else:
        _send(store, celery, job.id, job.queue or settings.queue)
    response.headers["Location"] = job_resource(job, request).links.self
    return job_resource(job, request)


def _send(store: JobStore, celery: Any, job_id: str, queue: str) -> None:
    """Enqueue; if the broker is down, the job must not sit `queued` forever: fail it and answer 503."""
    try:
        enqueue(celery, job_id, queue)
    except Exception as exc:
        log.error("could not enqueue job %s: %s", job_id, exc)
        store.finish(job_id, "failed", error=QueueUnavailable().problem(), expected="queued")
        unavailable = QueueUnavailable(job_id=job_id)
        unavailable.headers = {"Retry-After": str(CAPACITY_RETRY_S)}
        raise unavailable from None


@router.get(
    "",
    response_model=JobPage,
    summary="List your jobs",
    description="Newest first, optionally filtered by status. Follow `next_page_token` for more.",
    responses=problem_responses({422: "Bad status, page_size or page_token."}),
)
def list_jobs(
    request: Request,
    tenant: TenantDep,
    store: StoreDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    page_token: Annotated[str | None, Query(pattern=r"^[0-9]+(\.[0-9]+)?$",
                                            description="Opaque: the next_page_token of the previous page.")] = None,
) -> JobPage:
    items, token = store.list_jobs(tenant, status=status, page_size=page_size, page_token=page_token)
    return JobPage(items=[job_resource(job, request) for job in items], next_page_token=token)


@router.get(
    "/{job_id}",
    response_model=Job,
    summary="Poll a job",
    description="Status and progress per arm. While queued or running the answer carries `Retry-After` "
    "(seconds) and an `ETag`; send it back in `If-None-Match` to get 304 until something changed.",
    responses={304: {"description": "Not modified since the ETag you sent."}, **NOT_FOUND},
)
async def get_job(
    job: OwnedJob,
    request: Request,
    response: Response,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Any:
    headers = poll_headers(job)
    if if_none_match and etag_matches(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return job_resource(job, request)


def result_so_far(store: JobStore, job: JobRecord) -> dict[str, Any] | None:
    """The stored result, or the partial one stitched from the recorded chunks; None when no step ran."""
    if job.status == "queued":
        return None
    result = store.result(job.id)
    if result is None:
        stopped = "cancelled" if job.status == "cancelled" else None
        result = partial_or_none(store, job.id, job.spec, stopped)
    if result is None or not any(arm.get("lrs") for arm in result.get("arms", [])):
        return None
    return result


def require_result_so_far(store: JobStore, job: JobRecord) -> dict[str, Any]:
    result = result_so_far(store, job)
    if result is None:
        when = {"queued": "has not started yet", "running": "has not recorded a step yet"}.get(
            job.status, f"{job.status} before any step ran")
        raise ProblemError(409, "no-curves-yet", f"Job {job.id} {when}, so there are no curves. Poll "
                           f"GET /v1/jobs/{job.id} and try again once steps are recorded.")
    return result


@router.get(
    "/{job_id}/result",
    summary="Curves, suggestions and the recommendation",
    description="200 once the job succeeded. A cancelled or failed job answers with the partial curves it "
    "recorded (`status` tells which), or 409 when no step ran; a queued or running job is 409 unless "
    "`partial=true` asks for the curves recorded so far (with suggestions computed on them).",
    response_model=Result,
    response_model_exclude_unset=True,  # a field the result lacks (`confirm` without sweep.confirm) stays out
    responses={**NOT_FOUND,
               **problem_responses({409: "Not finished yet, or it ended before any step ran."})},
)
def get_result(
    job: OwnedJob,
    store: StoreDep,
    partial: Annotated[bool, Query(description="Also answer for a running job, with its curves so far.")] = False,
) -> Result:
    if job.status in UNFINISHED and not partial:
        raise ProblemError(409, "job-not-finished",
                           f"Job {job.id} is {job.status}; the result exists once it has succeeded. Poll "
                           f"/v1/jobs/{job.id} (or watch /events), or ask for the curves so far with "
                           "?partial=true.")
    return Result.model_validate({"id": job.id, "status": job.status, **require_result_so_far(store, job)})


#: Columns of `result.csv`, fixed by the API contract (docs/api.md).
CSV_COLUMNS = ("label", "step", "lr", "loss", "smoothed_loss", "loss_delta", "val_loss")


def curves_csv(result: dict[str, Any]) -> str:
    """One row per arm and step. `loss_deltas` (a moving-average derivative) is shorter than the curve
    when the window has not filled at the start: it is aligned to the last steps, as the dashboard draws it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for arm in result.get("arms", []):
        lrs = arm.get("lrs") or []
        deltas = arm.get("loss_deltas") or []
        columns = [arm.get("losses") or [], arm.get("smoothed_losses") or [],
                   [None] * max(0, len(lrs) - len(deltas)) + list(deltas), arm.get("val_losses") or []]
        for step, lr in enumerate(lrs):
            writer.writerow([arm.get("label"), step, lr, *(_cell(c, step) for c in columns)])
    return buffer.getvalue()


def _cell(values: list[Any], step: int) -> Any:
    return values[step] if step < len(values) and values[step] is not None else ""


@router.get(
    "/{job_id}/result.csv",
    summary="The curves as CSV",
    description="One row per arm and step: `label, step, lr, loss, smoothed_loss, loss_delta, val_loss` (empty "
    "cells where a value does not exist, e.g. `val_loss` when the sweep evaluates on training batches). A "
    "running, cancelled or failed job answers with the steps recorded so far; 409 before any step has run.",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "The curves."}, **NOT_FOUND,
               **problem_responses({409: "No step has run yet."})},
)
def get_result_csv(job: OwnedJob, store: StoreDep) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="lrrt-{job.id}.csv"'}
    if job.status in UNFINISHED:
        headers["Cache-Control"] = "no-store"
    return Response(curves_csv(require_result_so_far(store, job)), media_type="text/csv", headers=headers)


PlotKind = Literal["loss", "delta", "both"]
PLOT_MEDIA = {"png": "image/png", "svg": "image/svg+xml"}


def _plot_endpoint(fmt: Literal["png", "svg"]) -> Callable[..., Response]:
    def plot(
        job: OwnedJob,
        store: StoreDep,
        kind: Annotated[PlotKind, Query(description="loss: loss vs LR; delta: loss change vs LR; both.")] = "both",
    ) -> Response:
        from lrrt import charts  # matplotlib: imported on first plot, not at API start-up

        image = charts.render(require_result_so_far(store, job), kind, fmt)
        headers = {"Cache-Control": "no-store"} if job.status in UNFINISHED else {}
        return Response(image, media_type=PLOT_MEDIA[fmt], headers=headers)

    return plot


for _fmt in ("png", "svg"):
    router.add_api_route(
        f"/{{job_id}}/plot.{_fmt}",
        _plot_endpoint(_fmt),
        methods=["GET"],
        summary=f"Loss and loss-delta vs learning rate ({_fmt.upper()})",
        description="All arms on a log-scaled LR axis with the suggestions marked. A running job is drawn from "
        "the steps recorded so far. 409 before any step has run.",
        response_class=Response,
        responses={200: {"content": {PLOT_MEDIA[_fmt]: {}}, "description": "The chart."}, **NOT_FOUND,
                   **problem_responses({409: "No step has run yet."})},
        operation_id=f"plot_{_fmt}",
    )


@router.get(
    "/{job_id}/events",
    summary="Live progress (Server-Sent Events)",
    description="A `progress` event per recorded chunk (the job's `progress` object) and a final `status` event, "
    "after which the stream ends. Event ids are stream positions: reconnect with `Last-Event-ID` to resume.",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "The event stream."}, **NOT_FOUND},
)
def job_events(
    job: OwnedJob,
    request: Request,
    store: StoreDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern=r"^\d+-\d+$")] = None,
) -> EventSourceResponse:
    limiter: anyio.CapacityLimiter = request.app.state.events_limiter
    stream = event_stream(store, job.id, last_event_id or "0-0", limiter, finished=job.status in TERMINAL)
    return EventSourceResponse(stream, ping=15)


async def event_stream(store: JobStore, job_id: str, after: str, limiter: anyio.CapacityLimiter,
                       *, finished: bool) -> AsyncIterator[ServerSentEvent]:
    """Replay from `after`, then follow the stream until a terminal status event.

    Blocking reads run in threads of their own limiter, so long-lived streams never starve the
    threadpool the other routes use. A finished job is read without blocking; if its final event is
    gone (trimmed, or the client resumed past it), the stream still closes with a status event.
    """
    block_ms: int | None = None if finished else EVENTS_BLOCK_MS
    while True:
        events = await anyio.to_thread.run_sync(store.read_events, job_id, after, block_ms, limiter=limiter)
        for event_id, name, data in events:
            after = event_id
            yield ServerSentEvent(json.dumps(data), event=name, id=event_id)
            if name == "status" and data.get("status") in TERMINAL:
                return
        if events:
            continue
        job = await anyio.to_thread.run_sync(store.get, job_id, limiter=limiter)
        if job is None:
            return
        if job.status not in TERMINAL:
            continue
        if block_ms is None:
            yield ServerSentEvent(json.dumps({"status": job.status, "error": job.error}), event="status")
            return
        block_ms = None  # it ended while we waited: drain what is left without blocking


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=Job,
    response_description="Accepted: the job as it is now (cancelled, or running with cancel_requested).",
    summary="Cancel a job",
    description="Best effort: a queued job is cancelled at once and never starts; a running one stops at its next "
    "chunk and ends `cancelled` with its partial curves kept (`cancel_requested` is true meanwhile).",
    responses={**NOT_FOUND, **problem_responses({409: "The job already finished."})},
)
def cancel_job(job: OwnedJob, request: Request, store: StoreDep) -> Job:
    if job.status in TERMINAL:
        raise ProblemError(409, "job-finished",
                           f"Job {job.id} already {job.status}; there is nothing to cancel. "
                           "DELETE it to remove it.")
    store.request_cancel(job.id)
    return job_resource(store.get(job.id) or job, request)


@router.delete(
    "/{job_id}",
    status_code=204,
    response_description="Deleted.",
    summary="Delete a finished job and its results",
    responses={**NOT_FOUND, **problem_responses({409: "The job is queued or running: cancel it first."})},
)
def delete_job(job: OwnedJob, tenant: TenantDep, store: StoreDep) -> Response:
    if job.status in UNFINISHED:
        raise ProblemError(409, "job-not-finished",
                           f"Job {job.id} is {job.status}; cancel it first (POST /v1/jobs/{job.id}/cancel), "
                           "then delete it once it is cancelled.")
    store.delete(job.id, tenant)
    return Response(status_code=204)
