"""Errors the engine raises, each one a problem (RFC 9457) that tells the user what to change.

The worker stores `error.problem()` in the failed job record verbatim; the API raises the same classes
for checks it can make at submission (allow-list, caps), so a rejected layer reads the same whether the
API or the worker caught it.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "urn:lrrt:problem:"


class EngineError(Exception):
    """Base class. `slug` names the problem type; `status` is the HTTP status when raised at submission."""

    slug = "engine-error"
    title = "The range test failed"
    status = 422

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def problem(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }


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
    """Out of memory on the device."""

    slug = "out-of-memory"
    title = "The model and batch do not fit in memory"
    status = 507
