"""A compiled model's `compile_config`, read through an allow-list: never deserialized, never handed to Keras.

`model.compile(...)` makes `to_json()` carry the optimizer (class and hyperparameters), the loss (a name,
a Keras loss object, a Keras loss function, or one of these per output), the loss weights, the metrics
and a few execution switches. The range test should reproduce that training setup when the job does
not name its own, so this module reads the parts it can express as job fields (`lrrt.spec.JobSpec`
fills `optimizers`, `loss`, `loss_config` and `loss_weights` from them) and nothing else:

- `problems` is the safety verdict, applied to every submission by the one walk of the JSON
  (`lrrt.vetting.summary`): only the known keys, the optimizer as a Keras built-in class from
  `keras.optimizers` with scalar hyperparameters (its `learning_rate` a number or a built-in schedule),
  losses as built-in classes from `keras.losses` with scalar settings or as Keras's own loss functions
  (`{"module": "builtins", "class_name": "function", "config": "<loss name>"}`), weights as numbers.
  A custom class, a `registered_name` of its own, another module, a function from a module path, a
  nested object where a scalar belongs, a non-finite or huge number: refused, named, all at once.
  Metrics and the execution switches are ignored, whatever they hold: nothing reads them.
- `read` turns a safe `compile_config` into a `CompiledSetup`: the optimizer arm, the loss with its
  non-default settings (`from_logits=True`, `label_smoothing=0.1`), the loss weights, what was ignored
  (`notes`), and the settings a job cannot express (`unusable`: a non-default `reduction`, a setting the
  class does not take), which refuse the job only when it would use them (it names no `optimizers`, or
  no `loss`).

Vetting still drops `compile_config` before Keras builds the model (`lrrt.vetting.vet.vet_model_json`):
the engine compiles with the job's fields, which this reading made explicit at submission.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: The keys Keras 3's `Model.get_compile_config` writes.
KEYS = frozenset({"optimizer", "loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly",
                  "steps_per_execution", "jit_compile"})
#: Keys read and dropped without a look: they change what Keras reports, or how it executes, never the loss.
IGNORED_KEYS = frozenset({"metrics", "weighted_metrics", "run_eagerly", "steps_per_execution", "jit_compile"})

#: Hyperparameters every Keras 3 optimizer takes (`BaseOptimizer.get_config`), besides `name` and `learning_rate`.
OPTIMIZER_COMMON = frozenset({"weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum",
                              "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps"})
#: Each optimizer class we serve (`lrrt.spec.OPTIMIZER_NAMES`, by lower-cased class name) and its own
#: hyperparameters, as its `get_config` writes them (a test holds the table to Keras).
OPTIMIZER_CLASSES: dict[str, frozenset[str]] = {
    "SGD": frozenset({"momentum", "nesterov"}),
    "Adam": frozenset({"beta_1", "beta_2", "epsilon", "amsgrad"}),
    "AdamW": frozenset({"beta_1", "beta_2", "epsilon", "amsgrad"}),
    "RMSprop": frozenset({"rho", "momentum", "epsilon", "centered"}),
    "Adagrad": frozenset({"initial_accumulator_value", "epsilon"}),
    "Adadelta": frozenset({"rho", "epsilon"}),
    "Adamax": frozenset({"beta_1", "beta_2", "epsilon"}),
    "Nadam": frozenset({"beta_1", "beta_2", "epsilon"}),
    "Ftrl": frozenset({"learning_rate_power", "initial_accumulator_value", "l1_regularization_strength",
                       "l2_regularization_strength", "l2_shrinkage_regularization_strength", "beta"}),
    "Lion": frozenset({"beta_1", "beta_2"}),
    "Lamb": frozenset({"beta_1", "beta_2", "epsilon"}),
    "Adafactor": frozenset({"beta_2_decay", "epsilon_1", "epsilon_2", "clip_threshold", "relative_step"}),
}
#: Optimizer settings the range test does not take from a model, and why (the arm runs without them).
#: `lrrt.spec.FORBIDDEN_OPTIMIZER_PARAMS` keeps them out of a job's own arms for the same reasons.
OPTIMIZER_IGNORED: dict[str, str] = {
    "gradient_accumulation_steps": "the range test applies an update every batch; to test the same effective "
                                   "batch, set sweep.batch_size to your batch size times {value}",
    "loss_scale_factor": "loss scaling is the sweep's (sweep.mixed_precision); a constant factor does not change the updates",
}
#: Learning-rate schedules a model may carry (the range test sets its own learning rate: noted, not used).
SCHEDULE_CLASSES = frozenset({"CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "InverseTimeDecay",
                              "PiecewiseConstantDecay", "PolynomialDecay"})

#: Each Keras loss class we serve: the job's identifier for it (`lrrt.spec.LOSS_NAMES`), and the settings
#: its `get_config` writes with their defaults. A setting at its default is the identifier's loss; any
#: other value (`from_logits=True`, `label_smoothing=0.1`) goes in the job's `loss_config`, typed as its
#: default is (`loss_setting_problem`). `reduction` is not one: the range test records the mean loss.
LOSS_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "BinaryCrossentropy": ("binary_crossentropy", {"from_logits": False, "label_smoothing": 0.0, "axis": -1}),
    "BinaryFocalCrossentropy": ("binary_focal_crossentropy", {"from_logits": False, "label_smoothing": 0.0, "axis": -1,
                                                              "apply_class_balancing": False, "alpha": 0.25, "gamma": 2.0}),
    "CategoricalCrossentropy": ("categorical_crossentropy", {"from_logits": False, "label_smoothing": 0.0, "axis": -1}),
    "CategoricalFocalCrossentropy": ("categorical_focal_crossentropy", {"from_logits": False, "label_smoothing": 0.0,
                                                                        "axis": -1, "alpha": 0.25, "gamma": 2.0}),
    "SparseCategoricalCrossentropy": ("sparse_categorical_crossentropy", {"from_logits": False, "ignore_class": None}),
    "CategoricalHinge": ("categorical_hinge", {}),
    "Hinge": ("hinge", {}),
    "SquaredHinge": ("squared_hinge", {}),
    "Circle": ("circle", {"gamma": 80.0, "margin": 0.4, "remove_diagonal": True}),
    "CosineSimilarity": ("cosine_similarity", {}),
    "CTC": ("ctc", {}),
    "Dice": ("dice", {"axis": None}),
    "Tversky": ("tversky", {"alpha": 0.5, "beta": 0.5, "axis": None}),
    "Huber": ("huber", {}),
    "KLDivergence": ("kl_divergence", {}),
    "LogCosh": ("log_cosh", {}),
    "Poisson": ("poisson", {}),
    "MeanAbsoluteError": ("mean_absolute_error", {}),
    "MeanAbsolutePercentageError": ("mean_absolute_percentage_error", {}),
    "MeanSquaredError": ("mean_squared_error", {}),
    "MeanSquaredLogarithmicError": ("mean_squared_logarithmic_error", {}),
}
#: Settings of a loss object read past: its display name and dtype; the reduction when it is the default.
LOSS_PASSIVE = {"name", "dtype"}
DEFAULT_REDUCTION = "sum_over_batch_size"

#: Bounds that keep a hostile `compile_config` small: outputs with a loss, hyperparameters, string length,
#: and numbers a float64 holds exactly as integers.
MAX_OUTPUTS = 64
MAX_PARAMS = 32
MAX_STRING = 128
MAX_MAGNITUDE = 2.0**53

#: The largest number a job's loss setting may be (`label_smoothing`, `gamma`, `axis`, `ignore_class`).
MAX_SETTING = 1e6

#: The settings each loss identifier takes in a job's `loss_config`, with their defaults (from LOSS_CLASSES),
#: and the Keras class that takes them (`worker.engine.sweep` builds the loss from it).
LOSS_SETTINGS: dict[str, dict[str, Any]] = {identifier: defaults for identifier, defaults in LOSS_CLASSES.values()}
LOSS_CLASS_OF: dict[str, str] = {identifier: name for name, (identifier, _) in LOSS_CLASSES.items()}
#: The Keras class of each optimizer a job may name (`worker.engine.sweep` builds it from the class, not
#: `keras.optimizers.get`, whose identifier table lacks some: `lamb` in Keras 3.15).
OPTIMIZER_CLASS_OF: dict[str, str] = {name.lower(): name for name in OPTIMIZER_CLASSES}

Scalar = float | int | bool | str | None
#: What a problem with a setting that must be a scalar says is expected.
SCALAR = f"(expected a finite number of at most 2**53, a bool, null or a string of at most {MAX_STRING} characters)"


@dataclass(frozen=True)
class CompiledSetup:
    """What a safe `compile_config` says about training, in job terms (`lrrt.spec.JobSpec` fields)."""

    #: The optimizer as an arm: its `OPTIMIZER_NAMES` name and the hyperparameters it was compiled with
    #: (None: not compiled with one).
    optimizer: tuple[str, dict[str, Scalar]] | None = None
    #: The loss: one identifier, one per output name, or a list in output order (None: not compiled with one).
    loss: str | dict[str, str] | list[str] | None = None
    #: The loss's settings that are not its defaults, shaped as `loss` is: one loss's, one per output name
    #: (only the outputs that have some), or a list in output order (None: all at their defaults).
    loss_config: dict[str, Scalar] | dict[str, dict[str, Scalar]] | list[dict[str, Scalar]] | None = None
    #: Loss weights as compiled: one per output name, or a list in output order (None: all 1).
    loss_weights: dict[str, float] | list[float] | None = None
    #: The learning rate the model was compiled with: a number, or a schedule's class name.
    learning_rate: float | str | None = None
    #: What the range test does not take from the model, and why.
    notes: tuple[str, ...] = ()
    #: Settings a job cannot express, by the job field they would fill (`optimizers`, `loss`): each says
    #: what to change. They refuse a job only when it leaves that field to the model.
    unusable: dict[str, str] = field(default_factory=dict)


def problems(compile_config: Any) -> Iterator[str]:
    """Everything in `compile_config` outside the allow-list, each prefixed `compile_config`; nothing
    for `None` or `{}` (what an uncompiled model carries)."""
    if compile_config is None or compile_config == {}:
        return
    if not isinstance(compile_config, dict):
        yield "compile_config that is not an object"
        return
    for key in sorted(set(compile_config) - KEYS, key=str):
        yield f"compile_config.{_short(key)}"
    yield from _optimizer_problems(compile_config.get("optimizer"))
    yield from _loss_problems(compile_config.get("loss"), "compile_config.loss", per_output=True)
    yield from _weights_problems(compile_config.get("loss_weights"))


def _optimizer_problems(optimizer: Any) -> Iterator[str]:
    where = "compile_config.optimizer"
    if optimizer is None or (isinstance(optimizer, str) and optimizer.isidentifier() and len(optimizer) <= MAX_STRING):
        return
    if not isinstance(optimizer, dict):
        yield f"{where} that is neither a name nor an optimizer object"
        return
    name = optimizer.get("class_name")
    yield from _object_problems(optimizer, where, "keras.optimizers", OPTIMIZER_CLASSES)
    config = optimizer.get("config")
    if not isinstance(config, dict) or not isinstance(name, str) or name not in OPTIMIZER_CLASSES:
        return
    if len(config) > MAX_PARAMS + 2:
        yield f"{where}.config with {len(config)} entries"
        return
    for key, value in config.items():
        if key == "learning_rate" and isinstance(value, dict):
            yield from _object_problems(value, f"{where}.config.learning_rate", "keras.optimizers.schedules",
                                        SCHEDULE_CLASSES, nested_scalars=True)
        elif not _scalar(value):
            yield f"{where}.config.{_short(key)}: {_describe(value)} {SCALAR}"


def _loss_problems(loss: Any, where: str, *, per_output: bool) -> Iterator[str]:
    if loss is None or (isinstance(loss, str) and loss.isidentifier() and len(loss) <= MAX_STRING):
        return
    if per_output and isinstance(loss, list | dict) and not _is_object(loss):
        entries = loss.items() if isinstance(loss, dict) else enumerate(loss)
        if not 1 <= len(loss) <= MAX_OUTPUTS:
            yield f"{where} with {len(loss)} entries"
            return
        for key, entry in entries:
            if isinstance(key, str) and len(key) > MAX_STRING:
                yield f"{where} keyed by a name of {len(key)} characters"
            else:
                yield from _loss_problems(entry, f"{where}[{_short(key)}]", per_output=False)
        return
    if not isinstance(loss, dict):
        yield f"{where}: {_describe(loss)}"
    elif loss.get("class_name") == "function":  # a Keras loss function, by its registered name only
        if (loss.get("module"), loss.get("registered_name")) != ("builtins", "function") or not (
                isinstance(loss.get("config"), str) and loss["config"].isidentifier()
                and len(loss["config"]) <= MAX_STRING and set(loss) <= {"module", "class_name", "config", "registered_name"}):
            yield f"{where}: function {_describe(loss.get('config'))} from module {_describe(loss.get('module'))}"
    else:
        yield from _object_problems(loss, where, "keras.losses", LOSS_CLASSES)
        config = loss.get("config")
        if isinstance(config, dict):
            for key, value in config.items():
                if not _scalar(value):
                    yield f"{where}.config.{_short(key)}: {_describe(value)} {SCALAR}"


def _weights_problems(weights: Any) -> Iterator[str]:
    where = "compile_config.loss_weights"
    if weights is None:
        return
    values = list(weights.values()) if isinstance(weights, dict) else weights if isinstance(weights, list) else [weights]
    if len(values) > MAX_OUTPUTS or (isinstance(weights, dict) and any(len(str(k)) > MAX_STRING for k in weights)):
        yield f"{where} with {len(values)} entries"
        return
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value) or value < 0:
            yield f"{where}: {_describe(value)} (weights are numbers >= 0)"


def _object_problems(obj: dict[str, Any], where: str, module: str, classes: Any, *, nested_scalars: bool = False) -> Iterator[str]:
    """A serialized Keras object: a built-in class of `classes` from `module`, registered as itself (or not
    at all), with a config object; `nested_scalars` also checks that config's values are scalars."""
    name = obj.get("class_name")
    if not isinstance(name, str) or name not in classes:
        yield f"{where}: class {_describe(name)}"
        return
    if obj.get("module") != module:
        yield f"{where}: {name} from module {_describe(obj.get('module'))}"
    if obj.get("registered_name") not in (None, name):
        yield f"{where}: {name} registered as {_describe(obj.get('registered_name'))}"
    if set(obj) - {"module", "class_name", "config", "registered_name"}:
        yield f"{where}: {name} with keys {sorted(map(_short, set(obj) - {'module', 'class_name', 'config', 'registered_name'}))}"
    config = obj.get("config")
    if not isinstance(config, dict):
        yield f"{where}: {name} with a config that is not an object"
    elif nested_scalars:
        for key, value in config.items():
            if not (_scalar(value) or (isinstance(value, list) and len(value) <= MAX_PARAMS and all(map(_scalar, value)))):
                yield f"{where}.config.{_short(key)}: {_describe(value)} {SCALAR}"


def setup_of(model: Any) -> CompiledSetup | None:
    """The training setup a model JSON was compiled with; None when it was not compiled (no or an empty
    `compile_config`) or its `compile_config` has `problems` (vetting refuses it)."""
    compile_config = model.get("compile_config") if isinstance(model, dict) else None
    if not compile_config or next(problems(compile_config), None) is not None:
        return None
    return read(compile_config)


def read(compile_config: dict[str, Any]) -> CompiledSetup:
    """The training setup of a `compile_config` that `problems` found nothing in (an empty one: nothing)."""
    notes: list[str] = []
    unusable: dict[str, str] = {}
    optimizer, learning_rate = _read_optimizer(compile_config.get("optimizer"), notes, unusable)
    loss, loss_config = _read_loss(compile_config.get("loss"), unusable)
    weights = compile_config.get("loss_weights")
    if isinstance(weights, int | float):  # one weight for a one-output model scales the loss
        weights = [float(weights)]
    if weights is not None and all(w == 1 for w in (weights.values() if isinstance(weights, dict) else weights)):
        weights = None  # all 1: what no weights means
    ignored = sorted(k for k in IGNORED_KEYS if compile_config.get(k) not in (None, False, 1, []))
    if ignored:
        notes.append(f"not taken from the model: {', '.join(ignored)} (the range test records its own loss per step "
                     "and runs its own execution settings)")
    return CompiledSetup(optimizer=optimizer, loss=loss, loss_config=loss_config, loss_weights=weights, learning_rate=learning_rate,
                         notes=tuple(notes), unusable=unusable)


def _read_optimizer(optimizer: Any, notes: list[str], unusable: dict[str, str]
                    ) -> tuple[tuple[str, dict[str, Scalar]] | None, float | str | None]:
    if optimizer is None:
        return None, None
    if isinstance(optimizer, str):
        return (optimizer.lower(), {}), None
    name, config = optimizer["class_name"], dict(optimizer["config"])
    learning_rate = config.pop("learning_rate", None)
    if isinstance(learning_rate, dict):
        learning_rate = str(learning_rate["class_name"])
    config.pop("name", None)
    if not config.get("use_ema"):  # EMA off (the default): its switch, momentum and frequency say nothing
        for key in ("use_ema", "ema_momentum", "ema_overwrite_frequency"):
            config.pop(key, None)
    params: dict[str, Scalar] = {}
    for key, value in config.items():
        if value is None:
            continue  # Keras's "not set"
        if key in OPTIMIZER_IGNORED:
            notes.append(f"the model's optimizer sets {key}={value}, not used: "
                         + OPTIMIZER_IGNORED[key].format(value=value))
        elif key in OPTIMIZER_COMMON or key in OPTIMIZER_CLASSES[name]:
            params[key] = value
        else:
            unusable["optimizers"] = (f"the model's {name} sets {key!r}, which {name} does not take in the Keras we "
                                      "serve: name the optimizers in the job, or compile the model without it")
    return (name.lower(), params), learning_rate


def _read_loss(loss: Any, unusable: dict[str, str]) -> tuple[
        str | dict[str, str] | list[str] | None,
        dict[str, Scalar] | dict[str, dict[str, Scalar]] | list[dict[str, Scalar]] | None]:
    """The loss identifier(s) and their non-default settings, shaped alike (see `CompiledSetup`)."""
    if loss is None:
        return None, None
    if isinstance(loss, dict) and not _is_object(loss):
        read = {str(output): _loss_identifier(entry, f"loss[{output}]", unusable) for output, entry in loss.items()}
        settings = {output: config for output, (_, config) in read.items() if config}
        return {output: name for output, (name, _) in read.items()}, settings or None
    if isinstance(loss, list):  # one per output, in output order (`lrrt.spec` keys them by output name)
        entries = [_loss_identifier(entry, f"loss[{i}]", unusable) for i, entry in enumerate(loss)]
        if len(entries) == 1:
            return entries[0][0], entries[0][1] or None
        return [name for name, _ in entries], [config for _, config in entries] if any(c for _, c in entries) else None
    name, config = _loss_identifier(loss, "loss", unusable)
    return name, config or None


def _loss_identifier(loss: Any, where: str, unusable: dict[str, str]) -> tuple[str, dict[str, Scalar]]:
    """A loss entry as the identifier a job names it by (`lrrt.spec` checks it against LOSS_NAMES) and its
    settings that are not the class's defaults (a job's `loss_config` for it)."""
    if isinstance(loss, str):
        return loss, {}
    if loss is None:  # Keras trains that output without a loss; a job names one for every output
        unusable["loss"] = (f"the model's {where} is null (no loss for that output), which a job's loss cannot "
                            "express: name the loss in the job, one for every output")
        return "", {}
    if loss["class_name"] == "function":
        return str(loss["config"]), {}
    identifier, defaults = LOSS_CLASSES[loss["class_name"]]
    settings: dict[str, Scalar] = {}
    for key, value in loss["config"].items():
        if key in LOSS_PASSIVE or (key == "reduction" and value == DEFAULT_REDUCTION):
            continue
        if key in defaults and value == defaults[key] and type(value) is type(defaults[key]):
            continue
        problem = loss_setting_problem(identifier, key, value)
        if problem is None:
            settings[key] = value
        else:
            unusable["loss"] = (f"the model's {where} is {loss['class_name']} with {_short(key)}={_short(repr(value))}, "
                                f"which a job cannot express ({problem}): name the loss in the job (it then replaces "
                                "the model's)")
    return identifier, settings


def loss_setting_problem(identifier: str, key: str, value: Any) -> str | None:
    """Why `value` cannot be the setting `key` of the loss `identifier` in a job's `loss_config`, or None.

    The keys are the class's own (LOSS_CLASSES) and each value has its default's type: a bool for a bool;
    a number from 0 to MAX_SETTING for a float (`label_smoothing`, `alpha`, `gamma`); an integer of at most
    MAX_SETTING in size for an integer, or for a null default (`axis`, `ignore_class`), which null keeps."""
    defaults = LOSS_SETTINGS.get(identifier)
    if identifier not in LOSS_SETTINGS:  # an alias (`bce`, `mse`): Keras resolves it to a function, not a class
        return (f"{identifier} takes no settings, not {_short(key)!r}: name the loss by its full identifier "
                f"({', '.join(sorted(i for i, d in LOSS_SETTINGS.items() if d))}) to give settings")
    if not isinstance(key, str) or not defaults or key not in defaults:
        takes = f"takes only {', '.join(sorted(defaults))}" if defaults else "takes no settings"
        return f"{identifier} {takes}, not {_short(key)!r}"
    default = defaults[key]
    number = isinstance(value, int | float) and not isinstance(value, bool) and _finite(value)
    if isinstance(default, bool):
        ok, wanted = isinstance(value, bool), "true or false"
    elif isinstance(default, float):
        ok, wanted = number and 0 <= value <= MAX_SETTING, f"a number from 0 to {MAX_SETTING:g}"
    else:
        ok = (value is None and default is None) or (number and isinstance(value, int) and abs(value) <= MAX_SETTING)
        wanted = f"an integer of at most {MAX_SETTING:g} in size" + (" or null" if default is None else "")
    return None if ok else f"{identifier}'s {key} is {wanted}, not {_describe(value)}"


def loss_settings(identifier: str, settings: Any, where: str) -> dict[str, Scalar]:
    """`settings` as the `loss_config` of the loss `identifier`, checked by `loss_setting_problem`; a
    ValueError naming `where` and every problem otherwise."""
    if not isinstance(settings, dict):
        raise ValueError(f"{where} must be an object of {identifier}'s settings, not {_describe(settings)}")
    problems = [p for key, value in settings.items() if (p := loss_setting_problem(identifier, key, value))]
    if problems:
        defaults = LOSS_SETTINGS.get(identifier)
        raise ValueError(f"{where}: {'; '.join(problems)}" + (f" (Keras's defaults: {defaults})" if defaults else ""))
    return dict(settings)


def _is_object(value: Any) -> bool:
    """A serialized Keras object (as opposed to a dict of losses keyed by output name)."""
    return isinstance(value, dict) and "class_name" in value


def _scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_STRING
    if isinstance(value, bool) or value is None:
        return True
    return isinstance(value, int | float) and _finite(value)


def _finite(value: float) -> bool:
    """Finite and at most 2**53 in size (a huge integer is compared as one: `float()` of it overflows)."""
    return abs(value) <= MAX_MAGNITUDE if isinstance(value, int) else math.isfinite(value) and abs(value) <= MAX_MAGNITUDE


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object ({_short(value.get('class_name', 'no class_name'))})"
    if isinstance(value, list):
        return "a list"
    return _short(repr(value))
