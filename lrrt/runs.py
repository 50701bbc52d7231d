"""How a job's runs are numbered: its range-test runs, one per (arm, repeat), then with `sweep.confirm`
one per (arm, confirm slot). The store keeps each run's state under its number (`lrrt.store.jobs`),
the task layer runs the run its claim names, and results are assembled from the outcomes by number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lrrt.spec import JobSpec


def run_counts(spec: JobSpec) -> tuple[int, int]:
    """(range-test runs, all runs) of a job: arms x repeats, then arms x confirm candidates."""
    sweep_runs = len(spec.optimizers) * spec.sweep.repeats
    confirm = spec.sweep.confirm
    return sweep_runs, sweep_runs + (len(spec.optimizers) * confirm.candidates if confirm else 0)


@dataclass(frozen=True)
class RunRef:
    """What run `index` of a job trains: the range test of (arm, repeat), or confirm slot `slot` of arm."""

    arm_index: int
    repeat: int = 0
    slot: int | None = None  # None: a range-test run


def run_of(spec: JobSpec, index: int) -> RunRef:
    """The run numbered `index`: range-test runs are arm_index * repeats + repeat, confirm runs follow at
    arm_index * candidates + slot."""
    sweep_runs = len(spec.optimizers) * spec.sweep.repeats
    if index < sweep_runs:
        arm, repeat = divmod(index, spec.sweep.repeats)
        return RunRef(arm, repeat)
    assert spec.sweep.confirm is not None
    arm, slot = divmod(index - sweep_runs, spec.sweep.confirm.candidates)
    return RunRef(arm, slot=slot)


def split_outcomes(spec: JobSpec, outcomes: dict[int, dict[str, Any]]) -> tuple[dict[tuple[int, int], dict[str, Any]],
                                                                               dict[tuple[int, int], dict[str, Any]]]:
    """Ended runs' outcomes by run number, as `lrrt.results.stitched_result` takes them: the
    range-test runs' by (arm, repeat) and the confirm runs' by (arm, slot)."""
    sweep: dict[tuple[int, int], dict[str, Any]] = {}
    confirmed: dict[tuple[int, int], dict[str, Any]] = {}
    for index, outcome in outcomes.items():
        ref = run_of(spec, index)
        if ref.slot is None:
            sweep[(ref.arm_index, ref.repeat)] = outcome
        else:
            confirmed[(ref.arm_index, ref.slot)] = outcome
    return sweep, confirmed
