"""What the coordinator (`lrrt.coordinator`) needs of a job store, as a protocol, so that one job's life
runs against Redis (`lrrt.store.jobs.JobStore`, the service) or against memory (`lrrt.inprocess`, the
in-process `lr_find`: no Redis in a notebook) with the same code and the same result assembly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from lrrt.records import JobRecord
from lrrt.result_model import RunReport
from lrrt.store.outcomes import RunEnd


class RunCounters(Protocol):
    """The fleet's counters a run feeds (`lrrt.store.stats.Stats`)."""

    def add_steps(self, steps: int, seconds: float) -> None: ...

    def add_finished(self, status: str, duration_s: float | None) -> None: ...


class JobRepository(Protocol):
    """The reads and state changes of a running job, with `JobStore`'s meaning for each (see there)."""

    @property
    def stats(self) -> RunCounters: ...

    def get(self, job_id: str) -> JobRecord | None: ...

    def run_check(self, job_id: str, run: int, token: str) -> str | None: ...

    def start_progress(self, job_id: str, progress: dict[str, Any]) -> None: ...

    def record_chunk(self, job_id: str, progress: dict[str, Any] | Callable[[dict[str, Any] | None], dict[str, Any]],
                     chunk: dict[str, Any]) -> None: ...

    def end_run(self, job_id: str, run: int, token: str, report: RunReport, abandon: str = "") -> RunEnd: ...

    def run_outcomes(self, job_id: str) -> dict[int, RunReport]: ...

    def chunks(self, job_id: str) -> list[dict[str, Any]]: ...

    def finish(self, job_id: str, status: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, token: str = "", expected: str = "any") -> bool: ...
