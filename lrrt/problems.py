"""Problems (RFC 9457), built one way: every error a user can see is a `ProblemException` whose
`problem()` is the body, whoever raises it.

The worker stores `error.problem()` in the failed job record verbatim; the API raises the same classes
for checks it can make at submission (allow-list, caps), so a rejected layer reads the same whether the
API or the worker caught it, and answers its own HTTP errors with `service.problems.ProblemError`, a
`ProblemException` too. (`service.problems.Problem` is the body's schema in the OpenAPI document.)
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "urn:lrrt:problem:"


class ProblemException(Exception):
    """A problem object as an exception. Subclasses fix `slug`, `title` and `status` per kind of problem;
    `detail` says what went wrong this time and what to change; extension members ride in `extensions`."""

    slug = "problem"
    title = "The request failed"
    status = 422

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions
        self.headers: dict[str, str] = {}  # HTTP headers to answer with (Retry-After...), when the API raises it

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body = {"type": PROBLEM_BASE + self.slug, "title": self.title, "status": self.status, "detail": self.detail}
        if instance is not None:
            body["instance"] = instance
        return {**body, **self.extensions}


class EngineError(ProblemException):
    """What the engine and the vetting raise: `status` is the HTTP status when raised at submission."""

    slug = "engine-error"
    title = "The range test failed"


class ModelRejected(EngineError):
    """The model JSON names something outside the allow-list; extension `disallowed` lists it."""

    slug = "model-rejected"
    title = "The model uses classes that are not allowed"


class ModelInvalid(EngineError):
    """The JSON is allowed but Keras cannot build it (bad config, unknown field, wrong shapes)."""

    slug = "model-invalid"
    title = "The model JSON could not be built"


class ConfigInvalid(EngineError):
    """Unknown loss, bad optimizer params, inconsistent sweep settings the schema cannot see."""

    slug = "config-invalid"
    title = "The training configuration is invalid"


class DatasetError(EngineError):
    """Dataset not found, unreadable, unsafe, or its shapes do not fit the model."""

    slug = "dataset-error"
    title = "The dataset could not be used"


class CapExceeded(EngineError):
    """Over a configured cap (parameters, layers, steps, bytes); extensions name the cap and value."""

    slug = "cap-exceeded"
    title = "The job is over a configured limit"


class ResourceExhausted(EngineError):
    """Out of memory on the device (the backend's own out-of-memory error), or over the deployment's memory
    limit (`MemoryLimitExceeded`). Never retried: the same run on the same kind of worker runs out again."""

    slug = "resource-exhausted"
    title = "The model and batch do not fit in memory"
    status = 507


class MemoryLimitExceeded(ResourceExhausted):
    """A run grew its worker process past LRRT_MEMORY_LIMIT_BYTES (the worker's memory guard,
    worker/memory.py); the extensions give the limit and what the run reached, in bytes."""

    def __init__(self, *, limit_bytes: int, allowance_bytes: int, used_bytes: int, rss_bytes: int) -> None:
        super().__init__(
            f"A run of this job grew its worker's memory by {_mib(used_bytes)} (to a resident size of {_mib(rss_bytes)}), "
            f"over this deployment's limit of {_mib(limit_bytes)} per run (LRRT_MEMORY_LIMIT_BYTES; "
            f"{_mib(allowance_bytes)} more is allowed for the backend's first step), so it was "
            "stopped after one attempt and not retried. Use a smaller batch_size, smaller inputs (resize images, "
            "shorter sequences, no upsampling to large sizes) or fewer and narrower layers; or ask the operator to "
            "raise the limit if the workers have the memory.",
            limit_bytes=limit_bytes, allowance_bytes=allowance_bytes, used_bytes=used_bytes, rss_bytes=rss_bytes,
        )


def _mib(size: int) -> str:
    return f"{size / 1024 ** 2:,.0f} MiB"


class DatasetInvalid(DatasetError):
    """The dataset reference itself is malformed or not allowed (scheme, name, path rules)."""

    slug = "dataset-invalid"
    title = "The dataset reference cannot be used"


class DatasetNotFound(DatasetError):
    """The reference is well formed but names nothing this tenant can read."""

    slug = "dataset-not-found"
    title = "The dataset reference cannot be used"


class WeightsError(EngineError):
    """The job's `weights` reference or file cannot be used (malformed, missing, unsafe, another format)."""

    slug = "weights-invalid"
    title = "The weights cannot be used"


class WeightsNotFound(WeightsError):
    """The reference is well formed but names no weights this tenant can read."""

    slug = "weights-not-found"


class WeightsMismatch(WeightsError):
    """The weights file does not fit the model; extension `variables` lists path, expected and found."""

    slug = "weights-mismatch"
    title = "The weights do not fit the model"


class TimeLimit(ProblemException):
    """The job ran past the deployment's wall-time limit; its curves so far are kept."""

    slug = "time-limit"
    title = "The job ran past its time limit"
    status = 408

    def __init__(self, limit_s: int) -> None:
        super().__init__(
            f"The sweep was stopped after {limit_s} s, the job time limit of this deployment "
            "(LRRT_JOB_TIME_LIMIT_S). The curves recorded so far are kept in the result. Use fewer "
            "num_steps, fewer optimizers or repeats, a smaller batch_size or model, or ask the operator "
            "to raise the limit.",
            limit_s=limit_s,
        )


class InternalError(ProblemException):
    """A bug in the worker, not a problem with the request."""

    slug = "internal"
    title = "The worker hit an unexpected error"
    status = 500

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"The range test failed on an error the service did not expect. This is a bug, not a problem "
            f"with your request: the worker's log has the details under job id {job_id}. Resubmitting may "
            "work; if it fails again, report it with the job id."
        )


class WorkerStuck(ProblemException):
    """A run of the job stopped reporting progress on every attempt (the stuck-run watchdog, worker/tasks.py)."""

    slug = "worker-stuck"
    title = "The worker stopped making progress on this job"
    status = 500

    def __init__(self, note: dict[str, Any], attempts: int) -> None:
        super().__init__(
            f"A run of this job reported no progress for {note['seconds_without_chunk']:.0f} s (the stuck-run "
            f"limit was {note['stuck_after_s']:.0f} s) on each of its {attempts} attempt(s), so its worker process "
            "was replaced and the job failed instead of holding the worker. If the model compiles or loads its "
            "data slowly, ask the operator to raise LRRT_STUCK_AFTER_S; otherwise report it with the job id.",
            attempts=attempts,
        )


class QueueUnavailable(ProblemException):
    """The broker could not be reached at submission: the job was recorded as failed."""

    slug = "queue-unavailable"
    title = "The job could not be queued"
    status = 503

    def __init__(self, **extensions: Any) -> None:
        super().__init__("The job queue (the Redis broker) could not be reached, so the job was not started and is "
                         "recorded as failed. Resubmit in a little while.", **extensions)
