"""The one definition of a range-test job, shared by the API (validation) and the worker (execution).

Pure pydantic: importing this module must never import Keras or TensorFlow, because the API process
validates submissions with it. Structural rules (types, ranges, uniqueness) live here; deployment caps
(max steps, max batch size, ...) are configuration (`lrrt.settings.Settings`) and are checked by
`cap_violations`, so that the same spec stays valid on a bigger deployment. The API calls it at
submission and the engine again once the dataset size (needed by `epochs`) is known.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from lrrt.vetting import compiled
from lrrt.vetting.datasets import SCHEMES
from lrrt.vetting.summary import ModelSummary, summarize

if TYPE_CHECKING:
    from lrrt.settings import Settings

#: Keras optimizer identifiers an arm may name (lower-case, as `keras.optimizers.get` accepts them).
OPTIMIZER_NAMES: frozenset[str] = frozenset(
    {
        "sgd",
        "adam",
        "adamw",
        "rmsprop",
        "adagrad",
        "adadelta",
        "adamax",
        "nadam",
        "ftrl",
        "lion",
        "lamb",
        "adafactor",
    }
)

#: Keras loss identifiers a job may name (what `keras.losses.get` resolves; a test checks each one).
#: Class names (`MeanSquaredError`) and upper-case aliases (`MSE`) are accepted and stored in this form.
LOSS_NAMES: frozenset[str] = frozenset(
    {
        "binary_crossentropy", "bce", "binary_focal_crossentropy", "categorical_crossentropy",
        "categorical_focal_crossentropy", "sparse_categorical_crossentropy", "categorical_hinge", "hinge",
        "squared_hinge", "circle", "cosine_similarity", "ctc", "dice", "tversky", "huber", "kl_divergence",
        "kld", "log_cosh", "poisson", "mean_absolute_error", "mae", "mean_absolute_percentage_error", "mape",
        "mean_squared_error", "mse", "mean_squared_logarithmic_error", "msle",
    }
)

#: Constructor arguments the sweep owns or that could smuggle objects into Keras's deserializer.
FORBIDDEN_OPTIMIZER_PARAMS: frozenset[str] = frozenset(
    {"learning_rate", "lr", "name", "loss_scale_factor", "gradient_accumulation_steps"}
)

ParamValue = float | int | bool | str | None
#: One output's weight in the total loss.
LossWeight = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]


class _Strict(BaseModel):
    """Unknown fields are errors: a typo in a sweep setting must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DatasetRef(_Strict):
    uri: str = Field(
        description=(
            "builtin:digits | keras:mnist | keras:fashion_mnist | keras:cifar10 | keras:cifar100 | "
            "dataset:<id> | file:<relative path to .npz under the data root> | s3://bucket/key | gs://bucket/key "
            "(a file, or a prefix ending in '/' of shards or an image folder, under a prefix granted to the tenant)"
        ),
        examples=["builtin:digits"],
    )
    validation_split: float = Field(
        0.1, ge=0.0, le=0.5, description="Fraction held out (never trained on); used by evaluate_on=validation."
    )
    max_samples: int | None = Field(None, ge=1, description="Subsample the training set to at most this many rows.")
    normalize: bool = Field(False, description="Scale inputs to [0, 1] by the dataset's max absolute value.")
    format: Literal["npz", "npy", "parquet", "csv", "image_folder"] | None = Field(
        None, description="How to read the data; default: from the extension, or from what a prefix holds.")
    columns: dict[str, str | list[str]] | None = Field(
        None, description='Tables only: {"x": ["f1", "f2"] | "col", "y": "label"}, or x_<input>/y_<output> keys.',
        examples=[{"x": ["f1", "f2"], "y": "label"}])

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        scheme, sep, rest = uri.partition(":")
        if not sep or not rest:
            raise ValueError("dataset.uri must look like 'builtin:digits', 'keras:mnist', 'dataset:<id>' or 'file:<path>'")
        if scheme not in SCHEMES:
            raise ValueError(f"unknown dataset scheme {scheme!r}: use one of {', '.join(s + ':' for s in SCHEMES)}")
        return uri


class OptimizerArm(_Strict):
    name: str = Field(description="Keras optimizer identifier, e.g. 'sgd' or 'adam'.", examples=["adam"])
    label: str | None = Field(None, max_length=80, description="Display label; defaults to the name. Unique in a job.")
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="Constructor arguments (scalars only), e.g. {'momentum': 0.9}. Never learning_rate.",
    )

    @field_validator("name")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        key = name.strip().lower()
        if key not in OPTIMIZER_NAMES:
            raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(sorted(OPTIMIZER_NAMES))}")
        return key

    @field_validator("params")
    @classmethod
    def _no_owned_params(cls, params: dict[str, ParamValue]) -> dict[str, ParamValue]:
        owned = sorted(FORBIDDEN_OPTIMIZER_PARAMS & params.keys())
        if owned:
            raise ValueError(f"remove {owned} from params: the sweep sets the learning rate itself")
        if len(params) > 32:
            raise ValueError("at most 32 optimizer params")
        return params

    @property
    def display_label(self) -> str:
        return self.label or self.name


#: Most candidate LRs one arm may confirm (each is a training run as long as `confirm.steps`).
MAX_CONFIRM_CANDIDATES = 8
#: Sweeps' worth of steps the default confirm spends per arm (`Confirm.budget`): a job at most 4x its range test.
DEFAULT_CONFIRM_SWEEPS = 3


class Confirm(_Strict):
    """`sweep.confirm`: after the range test, train each arm at constant candidate LRs from the job's
    initial weights and score them on the held-out rows; the measured winner becomes the recommendation.

    The candidates are a search in rounds (`lrrt.confirm`): the recommendation and one LR on each side,
    then one more per round beyond the edge where the best lies, until a minimum is enclosed.
    Costs at most `candidates x steps` more steps per arm; slots the search does not need are skipped.
    Without `steps` the candidates share at most `DEFAULT_CONFIRM_SWEEPS` sweeps' worth of steps (each
    at most the sweep's length), so a job costs at most 4x its range test's steps; with the default 5
    candidates each trains 0.6 sweeps.
    """

    candidates: int = Field(5, ge=1, le=MAX_CONFIRM_CANDIDATES, description=(
        "Most constant LRs each arm trains at: the recommendation and one LR on each side of it (a rule's "
        "pick there, else a factor 3 away), then one per round beyond the best one's edge (or between it "
        "and a far neighbour) until worse candidates enclose it."))
    steps: int | None = Field(None, ge=1, description=(
        "Steps of each candidate's training (default: the sweep's length, shortened so that the candidates "
        "share at most 3 sweeps' worth: ceil(3 x sweep steps / candidates)). Set it to your training "
        "budget to confirm the LR that trains best for that budget."))

    def budget(self, sweep_steps: int) -> int:
        """Steps of each candidate's training when the range test is `sweep_steps` long: the one definition
        the caps, the progress total and the result's criterion all use."""
        return self.steps or min(sweep_steps, math.ceil(DEFAULT_CONFIRM_SWEEPS * sweep_steps / self.candidates))


class Sweep(_Strict):
    start_lr: float = Field(1e-5, gt=0, description="Learning rate of the first step.")
    end_lr: float = Field(10.0, gt=0, description="Learning rate of the last step.")
    mode: Literal["exponential", "linear"] = "exponential"
    num_steps: int | None = Field(None, ge=2, description="Sweep length in steps (default 200 unless epochs is set).")
    epochs: float | None = Field(None, gt=0, description="Sweep length in passes over the training set, instead of num_steps.")
    batch_size: int = Field(64, ge=1)
    divergence_threshold: float | None = Field(
        4.0, gt=1.0, description="Stop an arm when the smoothed loss exceeds this multiple of its best; null disables."
    )
    smoothing: float = Field(0.98, ge=0.0, lt=1.0, description="Exponential smoothing factor (fastai's beta).")
    moving_average: int = Field(20, ge=1, description="Window of the tutorial's loss-delta derivative.")
    evaluate_on: Literal["train", "validation"] = "train"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    repeats: int = Field(1, ge=1, description="Run each arm with this many seeds and report the spread (at most "
                         "the max_repeats cap, LRRT_MAX_REPEATS).")
    mixed_precision: bool = Field(False, description="Run under Keras's mixed_float16 policy (GPU workers).")
    jit_compile: bool = Field(False, description="Compile the train step with XLA.")
    confirm: Confirm | None = Field(None, description=(
        "false (default), true, or {candidates, steps}: verify the recommendation by short fixed-LR trainings "
        "scored on the held-out rows (needs held-out rows)."))

    @field_validator("confirm", mode="before")
    @classmethod
    def _confirm_switch(cls, value: Any) -> Any:
        """`false` is off and `true` the defaults, as docs/api.md has it; an object sets them."""
        if value is False:
            return None
        return {} if value is True else value

    @model_validator(mode="after")
    def _consistent(self) -> Sweep:
        if self.end_lr <= self.start_lr:
            raise ValueError("end_lr must be greater than start_lr")
        if self.num_steps is not None and self.epochs is not None:
            raise ValueError("set either num_steps or epochs, not both")
        return self

    def total_steps(self, train_samples: int) -> int:
        """Steps per arm: `num_steps`, or `epochs` worth of batches, or the default 200."""
        if self.num_steps is not None:
            return self.num_steps
        if self.epochs is not None:
            per_epoch = -(-train_samples // self.batch_size)
            return max(2, round(self.epochs * per_epoch))
        return 200

    def confirm_steps(self, train_samples: int) -> int:
        """Steps of each confirm candidate's training (0 when confirm is off)."""
        if self.confirm is None:
            return 0
        return self.confirm.budget(self.total_steps(train_samples))

    def held_out_missing(self, data: str, fix: str = "set dataset.validation_split > 0") -> str | None:
        """The refusal of a sweep that scores on held-out rows (`confirm`, `evaluate_on='validation'`) run on
        data without any (`data` says why it has none, `fix` what to do), else None.

        The one statement of the rule: the spec applies it to built-in datasets, the API to uploads (from
        their metadata) and the engine to the data it loaded, each before anything trains.
        """
        needs = [name for name, on in (("sweep.confirm", self.confirm is not None),
                                       ("evaluate_on='validation'", self.evaluate_on == "validation")) if on]
        if not needs:
            return None
        return f"{' and '.join(needs)} score{'s' if len(needs) == 1 else ''} on held-out rows, but {data}: {fix}"


class JobSpec(_Strict):
    """A submission, exactly as `POST /v1/jobs` receives it (minus transport-level concerns)."""

    model: dict[str, Any] = Field(
        description="Keras `model.to_json()` output, as a JSON object or as the JSON string itself.",
        examples=[{"class_name": "Sequential", "config": {"layers": []}}],
    )
    dataset: DatasetRef
    weights: str | None = Field(
        None, max_length=4096, description=(
            "Where every arm starts: null (default) for a fresh initialisation, 'weights:<id>' for weights uploaded "
            "with POST /v1/weights, or 'file:<path>.weights.h5' under the server's data root (Keras 3 "
            "model.save_weights output)."),
        examples=[None, "weights:3f2a9c0e5b7d4f18a6c2e0b9d8f7a6c5"])
    loss: str | dict[Annotated[str, Field(max_length=128)], str] = Field(
        "sparse_categorical_crossentropy",
        description="A Keras loss identifier, or an object giving one per model output (keyed by output name). "
        "Default: a compiled model's own loss, else sparse_categorical_crossentropy.",
    )
    loss_config: dict[Annotated[str, Field(max_length=128)], Any] | None = Field(
        None, max_length=64, description="The loss's settings beyond its identifier, as Keras's loss class takes "
        "them: for one loss its settings ({\"from_logits\": true, \"label_smoothing\": 0.1}), for a loss object "
        "{output name: settings} for the outputs that have some. Only the class's own settings, typed as their "
        "defaults (no `reduction`). Default: a compiled model's own when the job names no loss, else none.",
        examples=[None, {"from_logits": True}])
    loss_weights: list[LossWeight] | dict[Annotated[str, Field(max_length=128)], LossWeight] | None = Field(
        None, description="Each output's weight in the total loss (Keras's compile(loss_weights=...)): a list in output "
        "order or {output name: weight}. Default: a compiled model's own when the job names no loss, else all 1.")
    optimizers: Annotated[list[OptimizerArm], Field(min_length=1, max_length=16)] = Field(
        default_factory=lambda: [OptimizerArm(name="adam")],
        description="The arms. Default: a compiled model's own optimizer with its hyperparameters, else adam.",
    )
    sweep: Sweep = Field(default_factory=Sweep)
    labels: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict, max_length=32
    )
    backend: Literal["auto", "tensorflow", "jax"] = Field(
        "auto", description="Keras backend to run on. `auto`: the faster one for this model and device among the "
        "backends with live workers (the rule is in docs/design.md); a named one must have live workers.")

    @field_validator("model", mode="before")
    @classmethod
    def _parse_model_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"model is a string but not valid JSON: {exc.msg} at position {exc.pos}") from None
        if not isinstance(value, dict):
            raise ValueError("model must be the object (or JSON string) that Keras's model.to_json() returns")
        return value

    @field_validator("weights")
    @classmethod
    def _weights_scheme(cls, weights: str | None) -> str | None:
        """The form only; `lrrt.vetting.weights.check_reference` applies the id and path rules."""
        if weights is not None and not weights.startswith(("weights:", "file:")):
            raise ValueError("weights must be null (a fresh initialisation), 'weights:<id>' (upload the file with "
                             "POST /v1/weights) or 'file:<path>.weights.h5' under the server's data root")
        return weights

    @field_validator("loss")
    @classmethod
    def _loss_identifier(cls, loss: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(loss, dict):
            if not 1 <= len(loss) <= 64:
                raise ValueError("a loss object needs one entry per model output (at most 64)")
            return {output: _loss_name(name) for output, name in loss.items()}
        return _loss_name(loss)

    @field_validator("loss_config")
    @classmethod
    def _loss_settings(cls, config: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        """Only settings the identifier's Keras class takes, typed as their defaults
        (`compiled.loss_setting_problem`), shaped as `loss` is."""
        loss = info.data.get("loss")
        if config is None or loss is None:  # no loss: its own error says why
            return config
        if isinstance(loss, str):
            return compiled.loss_settings(loss, config, "loss_config")
        if set(config) - set(loss):
            raise ValueError(f"loss_config names outputs {sorted(set(config) - set(loss))} that the loss object does "
                             f"not: key it by the loss's output names {sorted(loss)}, each with that loss's settings")
        return {output: compiled.loss_settings(loss[output], settings, f"loss_config[{output}]")
                for output, settings in config.items()}

    @cached_property
    def model_summary(self) -> ModelSummary:
        """The one walk of `model` (`lrrt.vetting.summary`), taken on first use and kept: the caps, the
        allow-list verdict and the backend rule of one submission all read it. Nothing edits a spec's
        model after validation; a spec with another model is validated anew (`model_copy` would carry
        the old summary along)."""
        return summarize(self.model)

    def loss_names(self) -> list[str]:
        """Every loss identifier the job names (one, or one per output)."""
        return sorted(set(self.loss.values())) if isinstance(self.loss, dict) else [self.loss]

    @model_validator(mode="before")
    @classmethod
    def _compiled_defaults(cls, data: Any) -> Any:
        """`optimizers` and `loss` (with `loss_config` and `loss_weights`) the body leaves out, from a compiled model's
        `compile_config` (read through `lrrt.vetting.compiled`'s allow-list), so that the range test
        trains as the user's model.compile(...) does and the spec stored from here on is explicit. Filled
        before validation, so the filled fields pass every rule a job's own do.

        A `compile_config` outside the allow-list fills nothing: vetting refuses it (`model-rejected`).
        A setting a job cannot express refuses the job only when the job leaves that field to the model.
        """
        if not isinstance(data, dict):
            return data
        model: Any = data.get("model")
        if isinstance(model, str):
            try:
                model = json.loads(model)
            except json.JSONDecodeError:
                return data  # the model's own validator says so
        setup = compiled.setup_of(model)
        if setup is None:
            return data
        data = {**data, "model": model}
        if "optimizers" not in data and setup.optimizer is not None:
            if "optimizers" in setup.unusable:
                raise _refused("optimizers", setup.unusable["optimizers"])
            name, params = setup.optimizer
            data["optimizers"] = [{"name": name, "params": params}]
        if "loss" not in data and setup.loss is not None:
            if "loss" in setup.unusable:
                raise _refused("loss", setup.unusable["loss"])
            try:
                data["loss"], loss_config = _compiled_loss(setup, model)
            except ValueError as exc:
                raise _refused("loss", str(exc)) from None
            data.setdefault("loss_config", loss_config)
            data.setdefault("loss_weights", setup.loss_weights)
        return data

    def compiled_notes(self) -> list[dict[str, str]]:
        """How this job's setup relates to its model's `compile_config`, as the result's `notes` say it
        (`{"code", "message"}`; empty for an uncompiled model): whether the model's optimizer and loss
        are the ones used or the job's replaced them, its learning rate, and what was ignored."""
        setup = compiled.setup_of(self.model)
        if setup is None:
            return []
        notes = []
        if setup.optimizer is not None:
            name, params = setup.optimizer
            described = f"{name} {params}" if params else name
            used = [arm.display_label for arm in self.optimizers if (arm.name, arm.params) == (name, params)]
            notes.append({"code": "compiled_optimizer_used", "message": f"arm {used[0]!r} is the model's compiled optimizer "
                          f"({described})"} if used else
                         {"code": "compiled_optimizer_replaced", "message": f"the job's optimizers were used, not the "
                          f"model's compiled {described}"})
        if isinstance(setup.learning_rate, float | int):
            notes.append({"code": "compiled_learning_rate", "message": f"the model was compiled with learning_rate "
                          f"{setup.learning_rate:.3g}; the range test sweeps its own from start_lr to end_lr"})
        elif setup.learning_rate is not None:
            notes.append({"code": "compiled_learning_rate", "message": f"the model was compiled with a "
                          f"{setup.learning_rate} schedule; the range test sweeps its own learning rate"})
        if setup.loss is not None:
            try:
                model_loss = _compiled_loss(setup, self.model) if "loss" not in setup.unusable else None
            except ValueError:
                model_loss = None
            same = model_loss == (self.loss, self.loss_config)
            notes.append({"code": "compiled_loss_used", "message": f"the loss is the model's compiled loss "
                          f"({_described_loss(self.loss, self.loss_config)})"} if same else
                         {"code": "compiled_loss_replaced", "message": f"the job's loss "
                          f"({_described_loss(self.loss, self.loss_config)}) was used, not the model's compiled loss "
                          f"({_described_loss(setup.loss, setup.loss_config)})"})
        notes.extend({"code": "compiled_setting_ignored", "message": note} for note in setup.notes)
        return notes

    @model_validator(mode="after")
    def _unique_labels(self) -> JobSpec:
        seen: set[str] = set()
        for arm in self.optimizers:
            if arm.display_label in seen:
                raise ValueError(f"optimizer label {arm.display_label!r} is used twice: give each arm a unique label")
            seen.add(arm.display_label)
        if self.dataset.validation_split == 0 and not self.dataset.uri.startswith(("dataset:", "file:")):
            missing = self.sweep.held_out_missing("a built-in dataset holds out none when dataset.validation_split is 0")
            if missing is not None:
                raise ValueError(missing)
        return self


def _refused(field: str, message: str) -> ValidationError:
    """A refusal located at the job field a compiled model would have filled (`/loss`, `/optimizers`): that
    is the field to name in the job instead (a `ValueError` in a model validator has no location)."""
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    return ValidationError.from_exception_data("JobSpec", [InitErrorDetails(type=error, loc=(field,), input=None)])


def _compiled_loss(setup: compiled.CompiledSetup, model: dict[str, Any]
                   ) -> tuple[str | dict[str, str], dict[str, Any] | None]:
    """A compiled model's loss and its settings (`compiled.CompiledSetup.loss`, `.loss_config`) in the
    spelling a job's `loss` and `loss_config` store: lists (one per output, in output order) are keyed by
    `model`'s output names, as a job names them."""
    loss, config = setup.loss or "", setup.loss_config
    if isinstance(loss, list):
        from lrrt.vetting.vet import model_io  # vet imports this module; the reverse is needed only here

        try:
            _, outputs = model_io(model)
        except (AttributeError, TypeError, IndexError):  # JSON that vetting refuses anyway
            outputs = []
        if len(outputs) != len(loss):
            raise ValueError(f"the model was compiled with {len(loss)} losses in a list, but its JSON names outputs "
                             f"{outputs}: name the loss in the job, one per output name")
        loss = dict(zip(outputs, loss))
        if isinstance(config, list):
            config = {output: settings for output, settings in zip(outputs, config) if settings} or None
    try:
        names = {output: _loss_name(name) for output, name in loss.items()} if isinstance(loss, dict) else _loss_name(loss)
    except ValueError as exc:
        raise ValueError(f"the model was compiled with a loss this service does not serve ({exc}): name the loss "
                         "in the job") from None
    return names, config if isinstance(config, dict) else None  # a list was keyed by output above


def _described_loss(loss: Any, config: Any) -> str:
    """A loss as the notes name it: its identifier(s), and its settings when it has some."""
    return f"{loss} with {config}" if config else str(loss)


def _loss_name(name: str) -> str:
    """The accepted spelling of a loss identifier (`MSE` -> `mse`, `MeanSquaredError` -> `mean_squared_error`)."""
    snake = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    for candidate in (name, name.lower(), snake):
        if candidate in LOSS_NAMES:
            return candidate
    raise ValueError(f"unknown loss {name[:80]!r}: use one of {', '.join(sorted(LOSS_NAMES))}")


@dataclass(frozen=True)
class CapViolation:
    """One sweep setting over a deployment cap: where it is in the body, which cap, and both numbers."""

    pointer: str
    cap: str
    value: int
    limit: int

    @property
    def message(self) -> str:
        return f"{self.pointer.rsplit('/', 1)[-1]} is {self.value}; this server allows at most {self.limit}"


def cap_violations(spec: JobSpec, caps: Settings, train_samples: int | None = None) -> list[CapViolation]:
    """Sweep settings over the caps (empty when all fit).

    A sweep sized by `epochs` is only checked once `train_samples` is known (in the worker).
    """
    sweep = spec.sweep
    checks = [
        ("/sweep/batch_size", "max_batch_size", sweep.batch_size),
        ("/sweep/repeats", "max_repeats", sweep.repeats),
    ]
    if sweep.epochs is None or train_samples is not None:
        checks.append(("/sweep/num_steps", "max_steps", sweep.total_steps(train_samples or 0)))
        if sweep.confirm is not None:
            checks.append(("/sweep/confirm/steps", "max_steps", sweep.confirm_steps(train_samples or 0)))
    return [
        CapViolation(pointer, cap, value, getattr(caps, cap))
        for pointer, cap, value in checks
        if value > getattr(caps, cap)
    ]
