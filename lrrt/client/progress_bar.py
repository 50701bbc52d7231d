"""A live progress bar for a job, fed by `Client.wait(on_update=...)`: `lrrt submit --wait` and
`Client.lr_find` show the same one.

rich draws it in a terminal and in Jupyter; on a pipe (CI logs, a redirected stderr) rich does not
animate, so `plain=True` (automatic there) prints one line per change of status or running arm instead.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn


def short_number(value: Any) -> str:
    """A number in three significant digits ("-" for none): learning rates and losses in tables."""
    return "-" if value is None else f"{value:.3g}" if isinstance(value, (int, float)) else str(value)


def running_arm(job: dict[str, Any]) -> str:
    """`label: lr ... loss ...` of the arm running now, or "" when none is."""
    arms = (job.get("progress") or {}).get("arms") or []
    arm = next((a for a in arms if a.get("state") == "running"), None) if job["status"] == "running" else None
    return f"{arm['label']}: lr {short_number(arm.get('lr'))} loss {short_number(arm.get('loss'))}" if arm else ""


class ProgressBar:
    """`with ProgressBar(console) as show: client.wait(job_id, on_update=show)`."""

    def __init__(self, console: Console, *, plain: bool | None = None) -> None:
        self.console = console
        self.plain = plain if plain is not None else not (console.is_terminal or console.is_jupyter)
        self._bar: Progress | None = None
        self._task: Any = None
        self._last_line = ""

    def __enter__(self) -> ProgressBar:
        if not self.plain:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=self.console)
            self._bar.__enter__()
            self._task = self._bar.add_task("queued", total=None, detail="")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, exc, tb)

    def __call__(self, job: dict[str, Any]) -> None:
        progress = job.get("progress") or {}
        total = progress.get("steps_total") or None
        done = total if job["status"] == "succeeded" else progress.get("steps_done", 0)  # arms may stop early
        detail = running_arm(job)
        if self._bar is not None:
            self._bar.update(self._task, description=job["status"], total=total, completed=done, detail=detail)
            return
        line = f"{job['status']}  {detail}".rstrip()
        if line.split(":")[0] != self._last_line.split(":")[0]:  # a new status or a new arm, not every chunk
            self.console.print(f"{line}  ({done}/{total or '?'} steps)", highlight=False, markup=False)
        self._last_line = line
