"""What the store's state changes answer, as enums, so that callers branch on names the type checker
knows instead of on strings the Lua scripts happen to return (`lrrt/store/lua/*.lua`).

Each member's value is the script's own reply, so a reply maps onto its member with `Enum(reply)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ClaimOutcome(str, Enum):
    """`JobStore.claim`: what a message found when it tried to take a run of its job."""

    CLAIMED = "claimed"  # this worker now runs `Claim.run`
    BUSY = "busy"  # every run is taken, ended or waiting: the message has nothing to do
    SKIP = "skip"  # the job is terminal or gone (`Claim.status` says which)
    EXHAUSTED = "exhausted"  # the run's workers were lost too often: the caller fails the job


@dataclass(frozen=True)
class Claim:
    """A claim's answer: the outcome, and the run it concerns (claimed or exhausted) with its attempts,
    or the job's status (skip: 'missing' when the record is gone)."""

    outcome: ClaimOutcome
    run: int | None = None
    attempts: int = 0
    status: str | None = None


class RunEnd(str, Enum):
    """`JobStore.end_run`: what ending a run left the job in."""

    LAST = "last"  # every run has ended: the caller assembles the result and finishes the job
    CONFIRM = "confirm"  # the range test is over and every arm's first confirm round was released: send their messages
    ROUND = "round"  # the run ended its arm's confirm round and released the next one: send its message
    MORE = "more"  # other runs still run
    LOST = "lost"  # another runner holds the run: nothing was recorded
    GONE = "gone"  # the job ended meanwhile


class Release(str, Enum):
    """`JobStore.release_stuck`: what became of a run its watchdog gave up."""

    REQUEUED = "requeued"  # it runs again elsewhere: the caller sends its message
    EXHAUSTED = "exhausted"  # out of attempts: the caller fails the job
    LOST = "lost"  # not this runner's any more


class Reaped(str, Enum):
    """`JobStore.reap_orphans`: what the reaper did with a run whose lease expired."""

    REQUEUED = "requeued"  # back in the queue: the caller sends one message for it
    EXHAUSTED = "exhausted"  # out of attempts: the caller fails the job
    RESEND = "resend"  # a released confirm run that may never have had its message: send one
