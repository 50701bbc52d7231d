"""Which Keras backend runs a job: the backends a worker can run, their queues, and the `auto` rule.

A worker runs one backend for its whole life (Keras fixes it at import, `lrrt worker --backend`), and
consumes that backend's queue: TensorFlow keeps the deployment's `LRRT_QUEUE` as it is (deployments
and tests from before there was a choice keep working), JAX takes `<queue>.jax`. The API reads the
backends of the live workers from their heartbeats and routes each job (`route`); a job keeps its
queue in its record, so the reaper re-sends it to the same backend.

`auto` picks by a rule measured on the 2-core CPU development machine with `bench/peers.py`
(docs/design.md, "Which backend runs a job"): JAX steps dense, embedding and recurrent models several times
faster than TensorFlow there (less fixed cost per step), TensorFlow's oneDNN convolutions win once a step
convolves enough input positions (image positions x batch size), and on a GPU JAX is the measured fast
path (docs/design.md, "Speed"). When only one backend has live workers, `auto` uses it.

Pure Python: the API imports it (no Keras), and the engine names the reason in the result's `engine`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lrrt.vetting.summary import ModelSummary, summarize

Backend = Literal["tensorflow", "jax"]
#: Every backend a worker can run, the default (what a worker runs without `--backend`) first.
BACKENDS: tuple[Backend, ...] = ("tensorflow", "jax")
DEFAULT_BACKEND: Backend = "tensorflow"
#: A model as routing reads it: its summary (the API has it from vetting, `JobSpec.model_summary`), or the
#: model JSON itself (the reaper and the engine hold only the record's JSON, summarized here once).
Model = ModelSummary | dict[str, Any]

CONV_CLASSES = frozenset({"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                          "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D"})
RECURRENT_CLASSES = frozenset({"LSTM", "GRU", "SimpleRNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"})
#: Input positions per step (a sample's pixels or sequence steps, times the batch size) from which a
#: convolutional model runs faster on TensorFlow than on JAX on the CPU: the crossover measured in
#: docs/design.md ("Which backend runs a job", the table by input positions).
CPU_CONV_TENSORFLOW_FROM = 12_800


def queue_for(base: str, backend: str) -> str:
    """The Celery queue of a backend's workers: the deployment's queue for TensorFlow, `<queue>.<backend>` else."""
    return base if backend == DEFAULT_BACKEND else f"{base}.{backend}"


def device_kind() -> str:
    """`gpu` when this process can see an NVIDIA GPU, else `cpu`: what a worker's heartbeat reports, read
    without importing a framework (the prefork parent must not initialise CUDA)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "cpu"
    return "gpu" if os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl") else "cpu"


@dataclass(frozen=True)
class Choice:
    """The backend a job runs on and why, in words the result's `engine.backend_reason` shows (kept on
    the job's record when it is routed)."""

    backend: Backend
    reason: str


def _summary(model: Model) -> ModelSummary:
    return model if isinstance(model, ModelSummary) else summarize(model)


def model_kind(model: Model) -> str:
    """`recurrent`, `conv` or `dense` (anything else: dense, embedding, attention), from the classes it uses."""
    classes = _summary(model).classes
    if classes & RECURRENT_CLASSES:
        return "recurrent"
    if classes & CONV_CLASSES:
        return "conv"
    return "dense"


def input_positions(model: Model) -> int | None:
    """The largest input's spatial (or sequence) positions per sample: its shape without batch and channels."""
    sizes = [math.prod(d or 1 for d in shape[1:-1]) for shape in _summary(model).input_shapes if len(shape) > 2]
    return max(sizes) if sizes else None


def rule_backend(model: Model, device: str, batch_size: int) -> Choice:
    """The measured rule alone (both backends available): which backend is faster for this model, stepped
    `batch_size` samples at a time, on `device`."""
    if device == "gpu":
        return Choice("jax", "auto: on a GPU the measured fast path is JAX (docs/design.md)")
    model = _summary(model)
    kind = model_kind(model)
    params = model.params
    size = f"{params:,} parameters" if params is not None else "parameters unknown"
    if kind == "conv":
        positions = input_positions(model)
        per_step = positions * batch_size if positions is not None else None
        work = (f"{positions} input positions x batch {batch_size} = {per_step:,} a step" if per_step is not None
                else "input positions unknown")
        if per_step is None or per_step >= CPU_CONV_TENSORFLOW_FROM:
            return Choice("tensorflow", f"auto: convolutional model, {work} ({size}); on the CPU TensorFlow is "
                          f"faster from {CPU_CONV_TENSORFLOW_FROM:,}")
        return Choice("jax", f"auto: small convolutional model, {work} ({size}); on the CPU JAX is faster "
                      f"below {CPU_CONV_TENSORFLOW_FROM:,}")
    return Choice("jax", f"auto: {kind} model ({size}); on the CPU JAX is faster")


def auto_backend(model: Model, *, live: Mapping[str, str], batch_size: int) -> Choice:
    """`auto` for a deployment whose live workers run the backends in `live` (backend -> `cpu` or `gpu`)."""
    served = [b for b in BACKENDS if b in live]
    if not served:
        return Choice(DEFAULT_BACKEND, f"auto: no worker was live at submission; queued for {DEFAULT_BACKEND}, "
                      "the default backend")
    if len(served) == 1:
        return Choice(served[0], f"auto: only {served[0]} workers were live at submission")
    device = "gpu" if live.get("jax") == "gpu" else "cpu"
    return rule_backend(model, device, batch_size)


def route(requested: str, model: Model, live: Mapping[str, str], batch_size: int) -> Choice | None:
    """The backend of a job asking for `requested` (`auto` or a backend); None when it asks for a backend
    that no live worker runs while others are live (the API answers 422 naming the served ones).

    With no live worker at all, the job is queued for the backend asked (the default for `auto`), as
    before backends were chosen: a deployment restarting its workers does not turn submissions away.
    """
    if requested == "auto":
        return auto_backend(model, live=live, batch_size=batch_size)
    if live and requested not in live:
        return None
    backend: Backend = "jax" if requested == "jax" else "tensorflow"
    return Choice(backend, f"requested: the job asked for {requested}")


def in_process(spec_backend: str, model: Model, ran: str, batch_size: int) -> str:
    """Why a job run in this process (`lrrt run`, `lr_find`) runs on `ran`, this process's Keras backend:
    the routing choice of such a job, kept on its record as a service job's is at submission."""
    if spec_backend == ran:
        return f"requested: the job asked for {spec_backend}"
    if spec_backend != "auto":
        return (f"in-process: the job asked for {spec_backend}, but `lrrt run` and `lr_find` run on this "
                f"process's Keras backend, {ran} (set KERAS_BACKEND={spec_backend})")
    rule = rule_backend(model, device_kind(), batch_size)
    if rule.backend == ran:
        return rule.reason
    return (f"auto: the rule prefers {rule.backend}, but the job ran in-process (`lrrt run`, `lr_find`) on {ran}, "
            "this process's Keras backend")
