"""A job's status names: the one definition the store, the API schema, the metrics, the clients and
the tests import. Pure Python with no dependencies, so even the HTTP client can import it."""

from __future__ import annotations

from typing import Literal, get_args

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
#: Every status, in the order a job moves through them.
STATUSES: tuple[str, ...] = get_args(JobStatus)
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
UNFINISHED = frozenset(STATUSES) - TERMINAL
