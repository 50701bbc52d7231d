"""The copy-ready Keras code for a result's recommendation: a constant LR, or a one-cycle schedule.

The same story the dashboard tells (`service/dashboard/static/js/recommend.js`, `kerasCode`): the same
class names, number formatting, bounds and schedule, so `lrrt code ID` prints what the job page shows.
`OptimizerPlan` is also what `RangeTestResult.keras_optimizer()` builds from, so the code printed and
the optimizer built in-process cannot drift apart. Pure Python: nothing here imports Keras.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Keras class of each optimizer identifier the spec accepts (`lrrt.spec.OPTIMIZER_NAMES`).
KERAS_CLASSES = {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam", "ftrl": "Ftrl", "lion": "Lion",
    "lamb": "Lamb", "adafactor": "Adafactor",
}
#: Fraction of the run spent warming up when the result does not say (fastai's and Smith's 0.3).
DEFAULT_PCT_START = 0.3
#: Placeholder length of the user's training run in the one-cycle code (they replace it).
DEFAULT_TOTAL_STEPS = 10_000


class NoRecommendation(ValueError):
    """The result has no recommendation (no arm produced a usable curve), so there is no code to give."""


@dataclass(frozen=True)
class OptimizerPlan:
    """The recommended optimizer and its learning rates, as read from an API result."""

    job_id: str
    label: str
    keras_class: str
    params: dict[str, Any]
    learning_rate: float
    base_lr: float
    max_lr: float
    final_lr: float
    pct_start: float
    rule: str | None


def plan(result: dict[str, Any]) -> OptimizerPlan:
    """Read the recommendation and the best arm's bounds (one-cycle: base_lr -> max_lr -> final_lr)."""
    reco = result.get("recommendation")
    if not reco or reco.get("learning_rate") is None:
        raise NoRecommendation("no recommendation: no arm produced a usable curve (see each arm's diagnostics)")
    label = reco.get("optimizer") or result.get("best_arm")
    arm: dict[str, Any] = next((a for a in result.get("arms") or [] if a.get("label") == label), {})
    optimizer = arm.get("optimizer") or {}
    lr = float(reco["learning_rate"])
    bounds = reco.get("one_cycle") or arm.get("lr_bounds") or {}
    max_lr = float(bounds.get("max_lr") or lr)
    base_lr = float(bounds.get("base_lr") or max_lr / 10)
    name = optimizer.get("name") or "adam"
    return OptimizerPlan(
        job_id=str(result.get("id") or ""), label=str(label), keras_class=KERAS_CLASSES.get(name, name),
        params=dict(optimizer.get("params") or {}), learning_rate=lr, base_lr=base_lr, max_lr=max_lr,
        final_lr=float(bounds.get("final_lr") or base_lr / 10),
        pct_start=float(bounds.get("pct_start") or DEFAULT_PCT_START), rule=_chosen_rule(reco, arm),
    )


def keras_code(result: dict[str, Any], *, one_cycle: bool = False) -> str:
    """Python that builds the recommended optimizer (`optimizer = ...`); it runs as printed."""
    p = plan(result)
    lines = ["import keras", "", f"# lrrt job {p.job_id[:8]}: {p.label}"]
    if p.rule:
        lines.append(f'# rule "{p.rule}"')
    if not one_cycle:
        return "\n".join([*lines, f"optimizer = {_optimizer_call(p, py_float(p.learning_rate))}", ""])
    return "\n".join([
        *lines,
        "# One-cycle: warm up linearly from base_lr to",
        "# max_lr, then anneal (cosine) down to final_lr.",
        f"base_lr = {py_float(p.base_lr)}",
        f"max_lr = {py_float(p.max_lr)}",
        f"final_lr = {py_float(p.final_lr)}",
        "# epochs * steps_per_epoch of your training run:",
        f"total_steps = {DEFAULT_TOTAL_STEPS:_}",
        f"warmup_steps = int({p.pct_start} * total_steps)",
        "schedule = keras.optimizers.schedules.CosineDecay(",
        "    initial_learning_rate=base_lr,",
        "    warmup_target=max_lr,",
        "    warmup_steps=warmup_steps,",
        "    decay_steps=total_steps - warmup_steps,",
        "    alpha=final_lr / max_lr,",
        ")",
        f"optimizer = {_optimizer_call(p, 'schedule')}",
        "",
    ])


def lr_text(value: float) -> str:
    """A learning rate the way people write them (1.1e-3, 0.02, 3e-5): `format.js`'s `lr`."""
    if value == 0:
        return "0"
    if 0.01 <= abs(value) < 100:
        return repr(float(f"{value:.3g}")).removesuffix(".0")
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def py_float(value: float) -> str:
    """`lr_text` as a Python float literal (`format.js`'s `pyFloat`)."""
    text = lr_text(value)
    return text if "e" in text or "." in text else f"{text}.0"


def _py_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def _optimizer_call(p: OptimizerPlan, learning_rate: str) -> str:
    """One argument a line, as the dashboard's card shows it."""
    args = [f"learning_rate={learning_rate}", *(f"{k}={_py_value(v)}" for k, v in p.params.items())]
    return f"keras.optimizers.{p.keras_class}(\n" + "".join(f"    {a},\n" for a in args) + ")"


def _chosen_rule(reco: dict[str, Any], arm: dict[str, Any]) -> str | None:
    """The rule behind the recommended LR: named by the API, or the suggestion equal to it."""
    named = reco.get("rule") or arm.get("recommended_rule") or arm.get("rule")
    if named:
        return str(named)
    target = reco.get("learning_rate")
    for name, value in (arm.get("suggestions") or {}).items():
        lr = value if isinstance(value, (int, float)) else (value or {}).get("lr") if isinstance(value, dict) else None
        if isinstance(lr, (int, float)) and target is not None and abs(lr - target) <= 1e-9 * max(1.0, abs(target)):
            return str(name)
    return None
