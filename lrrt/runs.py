"""How a job's runs are numbered: its range-test runs, one per (arm, repeat), then with `sweep.confirm`
one per (arm, confirm slot). The store keeps each run's state under its number (`lrrt.store.jobs`),
the task layer runs the run its claim names, and results are assembled from the outcomes by number.

A confirm slot waits for its *gate* (`gate_of`): the first round's slots for the end of the whole
range test, a later round's slot for the end of every slot of its arm's round before it (its LR
depends on their held-out losses, `lrrt.confirm.planned_lrs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lrrt.confirm import FIRST_ROUND, round_of
from lrrt.result_model import RunOutcome, RunReport
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


def gate_of(spec: JobSpec, index: int) -> tuple[int, int] | None:
    """(arm index, round) of confirm run `index`, what the store releases it by; None for a range-test run."""
    ref = run_of(spec, index)
    return None if ref.slot is None else (ref.arm_index, round_of(ref.slot))


def released_runs(spec: JobSpec, ended: RunRef) -> int:
    """How many confirm runs the end of run `ended` released when it opened a gate (`RunEnd.CONFIRM`,
    `RunEnd.ROUND`): every arm's first round when it ended the range test, else its arm's next round."""
    assert spec.sweep.confirm is not None
    count = spec.sweep.confirm.candidates
    if ended.slot is None:
        return len(spec.optimizers) * min(FIRST_ROUND, count)
    following = round_of(ended.slot) + 1
    return sum(1 for slot in range(count) if round_of(slot) == following)


def split_outcomes(spec: JobSpec, reports: dict[int, RunReport]) -> tuple[dict[tuple[int, int], RunOutcome],
                                                                          dict[tuple[int, int], RunOutcome]]:
    """Ended runs' outcomes from their reports by run number, as `lrrt.results.stitched_result` takes
    them: the range-test runs' by (arm, repeat) and the confirm runs' by (arm, slot)."""
    sweep: dict[tuple[int, int], RunOutcome] = {}
    confirmed: dict[tuple[int, int], RunOutcome] = {}
    for index, report in reports.items():
        ref = run_of(spec, index)
        if ref.slot is None:
            sweep[(ref.arm_index, ref.repeat)] = report.outcome
        else:
            confirmed[(ref.arm_index, ref.slot)] = report.outcome
    return sweep, confirmed
