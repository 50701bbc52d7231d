"""The result of a job as typed records: what `lrrt.results` assembles, what the API's result route
declares (`service/api/schemas.py`, so `/openapi.json` documents the real fields), and what the
coordinator finishes a job with (`lrrt.coordinator`); and what each run reports when it ends
(`RunReport`), which the result is assembled from.

Dicts stay at the JSON edges: the store keeps the result and each run's report as JSON
(`RunReport.stored`), `JobResult.api()` gives the API's object. Rule-owned nested shapes (`repeats`,
`rules`, `diagnostics`, the recommendation's `one_cycle`) are the suggestion rules'
(`lrrt.suggestions`), typed as JSON values here. A field an arm or a result does not have is left out
of the JSON, not sent as null (`arms[].confirm` exists only when the job confirms), so the JSON is the
one `docs/api.md` shows. The fields its example names are required; the rest (the rules' detail,
fingerprints, confirm, the engine's runs) are optional, as a result stored before they existed lacks
them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def api(self) -> dict[str, Any]:
        """The JSON object, without the fields this record was not given."""
        return self.model_dump(mode="json", exclude_unset=True)


class _Stored(_Record):
    """A part of what a run's end leaves in the store (`RunReport`): read back by whichever version of
    the code runs then, so keys it does not know (an earlier or later version's) are ignored."""

    model_config = ConfigDict(extra="ignore")


class RunOutcome(_Stored):
    """How one run ended, as its engine reports it: a range-test run's stop reason and fingerprint, a
    confirm candidate's also its LR, held-out loss and curve (`lrrt.confirm.entries` reads them)."""

    stop_reason: str
    fingerprint: dict[str, str] | None = None
    lr: float | None = None
    val_loss: float | None = None
    steps: int | None = None
    losses: list[float | None] | None = None
    variables: dict[str, str] | None = None


class RunFigures(_Stored):
    """What the engine measured of one run it ran: its versions and device, its chunk size, its steps
    and seconds (`fit_seconds`: inside `fit`), and what the run started from; the job's `EngineFigures`
    are summed up from these (`lrrt.coordinator.job_engine`)."""

    keras: str
    backend: str
    device: str
    steps_per_execution: int
    steps: int
    fit_seconds: float
    seconds: float
    weights: dict[str, str] | None = None
    classes: list[str] | None = None


class RunReport(_Record):
    """What a run's end records (`lrrt.repository.JobRepository.end_run`): how it ended, and the
    engine's figures of a run that started (None for one that never did: cancelled before it started,
    a confirm slot without a candidate). `attempts` and `worker` are the store's own, filled in when
    it reads the report back (`run_outcomes`); a runner reporting its end leaves them.

    The store keeps it as one flat JSON object, the outcome's keys beside the figures' (`stored`), the
    object earlier versions wrote and read, so that a report outlives an upgrade in either direction.
    """

    outcome: RunOutcome
    figures: RunFigures | None = None
    attempts: int = 0
    worker: str | None = None

    def stored(self) -> dict[str, Any]:
        """The JSON object the store keeps (a field that is None is left out: a reader takes it for None)."""
        figures = {} if self.figures is None else self.figures.model_dump(mode="json", exclude_none=True)
        return self.outcome.model_dump(mode="json", exclude_none=True) | figures

    @classmethod
    def read(cls, stored: dict[str, Any], *, attempts: int, worker: str | None) -> RunReport:
        """The report `stored` holds, with what the store keeps beside it; figures only where the engine
        reported some (a run that never started stored its `stop_reason` alone)."""
        figures = RunFigures.model_validate(stored) if "keras" in stored else None
        return cls(outcome=RunOutcome.model_validate(stored), figures=figures, attempts=attempts, worker=worker)


class OptimizerRef(_Record):
    name: str
    params: dict[str, Any]


class ConfirmCandidate(_Record):
    """One confirm candidate of an arm (`sweep.confirm`): its constant LR, held-out loss and curve."""

    lr: float
    val_loss: float | None
    steps: int
    losses: list[float | None]
    stop_reason: str | None
    winner: bool
    round: int | None = Field(None, description="The confirm round that trained it (0: the first).")


class ConfirmBracket(_Record):
    """Where an arm's confirm winner lies among its candidates (`lrrt.confirm.bracket`)."""

    enclosed: bool = Field(description="Worse candidates were trained on both sides of the winner.")
    edge: Literal["low", "high"] | None = Field(description="The winner is the lowest or highest LR tried.")
    candidates: int = Field(description="Candidates trained.")
    rounds: int = Field(description="Rounds they were trained in.")
    advice: str | None = Field(description="With a winner at an edge: what to change so confirm can try beyond it.")


class ArmResult(_Record):
    """One arm's entry: its first seed's curves, the rules' suggestions, and the spread over seeds."""

    label: str
    optimizer: OptimizerRef
    lrs: list[float | None] = Field(description="lrs[i] is the learning rate of step i.")
    losses: list[float | None] = Field(description="losses[i] is step i's own batch loss (not a running mean).")
    val_losses: list[float | None] | None
    stop_reason: str | None
    smoothed_losses: list[float | None]
    loss_deltas: list[float | None]
    suggestions: dict[str, float | None] | None
    rules: dict[str, str] | None = None
    lr_bounds: dict[str, float | None] | None
    recommended_lr: float | None
    recommended_rule: str | None = None
    rule_spread_log10: float | None = None
    min_loss: float | None
    min_loss_lr: float | None
    diagnostics: list[Any]
    fingerprint: dict[str, str] | None = Field(
        None, description="Short sha256 of the run's initial weights and first batch; equal across arms.")
    repeats: dict[str, Any] | None = Field(description="With repeats > 1: each seed's suggestions and their spread.")
    confirm: list[ConfirmCandidate] | None = Field(None, description="With sweep.confirm: the candidates trained.")
    confirm_bracket: ConfirmBracket | None = Field(
        None, description="With sweep.confirm: whether the winner is enclosed by worse candidates or at an edge.")


class EngineRun(_Record):
    """One run of the job as it ran: which (arm, seed) or confirm slot, where, and how long."""

    arm_index: int
    repeat: int
    slot: int | None = None
    worker: str | None
    attempts: int
    device: str
    steps: int
    seconds: float
    variables: dict[str, str] | None = Field(None, description=(
        "Fingerprints of the run's variables: initial and final, and with frozen layers frozen_initial and "
        "frozen_final (equal when they stayed frozen)."))


class EngineFigures(_Record):
    """Which Keras and backend ran the job, why that backend (the routing choice its record keeps), and
    the job's figures."""

    keras: str
    backend: str
    backend_reason: str | None = None
    device: str
    seconds: float
    steps_per_execution: int | None = None
    steps_per_second: float | None = None
    weights: dict[str, str] | None = Field(None, description="The user's weights every run started from: uri and sha256.")
    classes: list[str] | None = Field(None, description="An image folder's class names, in label order.")
    runs: list[EngineRun] | None = None


class JobResult(_Record):
    """The whole result: every arm, the best one, the recommendation, the engine's figures; `stopped`
    says why the curves end early (a cancel, the time limit), None for a job that ran to its end."""

    arms: list[ArmResult]
    best_arm: str | None
    recommendation: dict[str, Any] | None
    recommendation_reason: str | None = None
    engine: EngineFigures | None
    stopped: str | None = None
    notes: list[dict[str, str]] | None = Field(None, description=(
        "A compiled model's: whether its compiled optimizer and loss were used or the job's replaced them, its "
        "learning rate, and the settings not taken from it ({code, message}); absent for an uncompiled model."))
