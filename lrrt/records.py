"""The job record as the store hands it out: typed, with its spec validated once, where it is read.

Redis keeps the record as a hash of strings (`lrrt.store.jobs`); `JobStore.get` decodes it into a
`JobRecord`, whose `spec` is the `JobSpec` the API validated at submission, validated again here and
nowhere else. The API, the reaper and the workers read attributes, never string keys.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from lrrt.spec import JobSpec
from lrrt.status import JobStatus


class JobRecord(BaseModel):
    """One job: who owns it, where it is queued, how far it got. `runs` counts its range-test and
    confirm runs (`lrrt.runs`); `version` grows with every change (the API's ETag)."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant: str
    status: JobStatus
    #: the Celery queue its messages go to (None: the deployment's default queue, records from before routing)
    queue: str | None
    #: the backend it was routed to and why, chosen once at submission (or when the reaper moved it):
    #: the result's `engine.backend_reason` (None: created without routing, as tests and scripts do)
    backend: str | None
    backend_reason: str | None
    spec: JobSpec
    labels: dict[str, str]
    created_at: str
    started_at: str | None
    finished_at: str | None
    #: a problem object (`lrrt.problems`) when the job failed
    error: dict[str, Any] | None
    #: the most times any one of its runs was claimed
    attempts: int
    #: when its first run was claimed (epoch seconds)
    started_ts: float | None
    runs: int
    version: int
    #: `lrrt.progress.JobProgress`'s object, None before the first run started
    progress: dict[str, Any] | None
    cancel_requested: bool
