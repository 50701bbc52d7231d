"""Response bodies as the OpenAPI document shows them. Requests are `lrrt.spec.JobSpec`.

The result is the product's typed result (`lrrt.result_model.JobResult`) with the job's id and status;
progress is passed through as the worker stored it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from lrrt.result_model import JobResult
from lrrt.status import JobStatus


class JobLinks(BaseModel):
    self: str
    result: str
    plot: str = Field(description="PNG charts; the same path with .svg gives SVG.")
    events: str = Field(description="Server-Sent Events stream of progress and status.")
    cancel: str


class Job(BaseModel):
    """A range-test job as clients poll it."""

    id: str
    status: JobStatus = Field(description="queued -> running -> succeeded | failed | cancelled")
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: dict[str, Any] | None = Field(
        description="Null until the worker reports the first chunk; then "
        "{steps_done, steps_total, fraction, arms: [{label, state, steps_done, lr, loss}]}.",
        examples=[{"steps_done": 120, "steps_total": 400, "fraction": 0.3,
                   "arms": [{"label": "SGD optimizer", "state": "running", "steps_done": 120, "lr": 0.0031,
                             "loss": 1.92}]}],
    )
    error: dict[str, Any] | None = Field(description="When failed: a problem object saying what to change.")
    labels: dict[str, str]
    attempts: int = Field(description="Times a worker has started this job (more than 1 after a lost worker).")
    cancel_requested: bool = Field(description="A cancel was asked for; a running job stops at its next chunk.")
    spec: dict[str, Any] = Field(description="The submitted spec as validated, with its defaults filled in, "
                                 "without the model (dataset, loss, optimizers, sweep, labels).")
    links: JobLinks


class JobPage(BaseModel):
    items: list[Job] = Field(description="Newest first.")
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last.")


class Result(JobResult):
    """The curves and recommendation; for a cancelled or failed job, the partial curves recorded."""

    id: str
    status: JobStatus = Field(description="The job's status: anything but succeeded means partial curves.")


class Dataset(BaseModel):
    id: str
    uri: str = Field(description="Use as dataset.uri in POST /v1/jobs.", examples=["dataset:3f2a..."])
    filename: str | None
    shapes: dict[str, list[int]] = Field(examples=[{"x": [1797, 64], "y": [1797]}])
    dtypes: dict[str, str] = Field(examples=[{"x": "float32", "y": "int64"}])
    bytes: int = Field(description="Size of the stored .npz file.")
    created_at: str


class Weights(BaseModel):
    id: str
    uri: str = Field(description="Use as `weights` in POST /v1/jobs.", examples=["weights:3f2a..."])
    filename: str | None
    bytes: int = Field(description="Size of the stored .weights.h5 file.")
    sha256: str = Field(description="SHA-256 of the file; the job result's engine.weights names it.")
    variables: dict[str, list[int]] = Field(description="Each variable's path in the file and its shape.",
                                            examples=[{"layers/dense/vars/0": [64, 32], "layers/dense/vars/1": [32]}])
    created_at: str


class WeightsPage(BaseModel):
    items: list[Weights] = Field(description="Newest first.")
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last.")


class DatasetList(BaseModel):
    items: list[Dataset] = Field(description="Newest first.")
