"""`RangeTestResult`: what `Client.lr_find` and the in-process `lrrt.client.local.lr_find` return.

A thin view over the API's result JSON (kept whole in `.data`) with what a notebook wants next: the
recommendation, every arm's suggestions, the charts drawn locally with matplotlib from the curves (no
server round trip), and the Keras optimizer at the recommended LR. Keras is imported only inside
`keras_optimizer()`: the API process imports this package and must never import Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrrt.client.keras_code import DEFAULT_TOTAL_STEPS, keras_code, plan

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class RangeTestResult:
    """One job's result. `status` is `succeeded`, or `cancelled`/`failed` for partial curves."""

    data: dict[str, Any]
    status: str = "succeeded"
    job_id: str | None = None
    error: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def partial(self) -> bool:
        """True when the sweep did not run to its end: treat the recommendation as a rough guide."""
        return self.status != "succeeded" or bool(self.data.get("stopped"))

    @property
    def weights(self) -> dict[str, Any] | None:
        """`{"uri", "sha256"}` of the weights every arm started from, or None for a fresh initialisation."""
        return (self.data.get("engine") or {}).get("weights")

    @property
    def recommendation(self) -> dict[str, Any] | None:
        """`{"optimizer", "learning_rate", "rule", "verified", "criterion", "one_cycle": {"base_lr", "max_lr", ...}}`,
        or None."""
        return self.data.get("recommendation")

    @property
    def learning_rate(self) -> float | None:
        """The recommended learning rate (of the best arm), or None when no arm gave a usable curve."""
        return (self.recommendation or {}).get("learning_rate")

    @property
    def verified(self) -> bool:
        """True when `sweep.confirm` trained the candidates and the recommendation is the measured winner."""
        return bool((self.recommendation or {}).get("verified"))

    @property
    def confirm(self) -> dict[str, list[dict[str, Any]]]:
        """Each arm's confirm candidates by label (`{"lr", "val_loss", "steps", "losses", "stop_reason",
        "winner", "round"}`, by LR); empty lists when the job did not confirm. Whether each arm's winner
        is enclosed by worse candidates: the arm's `confirm_bracket` in `data`."""
        return {arm["label"]: list(arm.get("confirm") or []) for arm in self.data.get("arms", [])}

    @property
    def suggestions(self) -> dict[str, dict[str, float | None]]:
        """Each arm's suggestions by label: `{"adam": {"steepest": ..., "valley": ..., ...}}`."""
        return {arm["label"]: dict(arm.get("suggestions") or {}) for arm in self.data.get("arms", [])}

    @property
    def arms(self) -> list[dict[str, Any]]:
        return list(self.data.get("arms", []))

    def plot(self, path: str | Path | None = None, kind: str = "both") -> Figure:
        """The loss and loss-delta charts (`kind`: loss, delta or both) as a matplotlib Figure, which a
        notebook displays; with `path`, also saved there (.png, .svg or .pdf, by its suffix)."""
        from lrrt import charts  # matplotlib: only when a chart is asked for

        figure = charts.figure(self.data, kind)  # type: ignore[arg-type]
        if path is not None:
            figure.savefig(path, dpi=100)
        return figure

    def keras_code(self, *, one_cycle: bool = False) -> str:
        """The copy-ready Python the dashboard and `lrrt code` show for this result."""
        return keras_code({"id": self.job_id, **self.data}, one_cycle=one_cycle)

    def keras_optimizer(self, *, one_cycle: bool = False, total_steps: int = DEFAULT_TOTAL_STEPS) -> Any:
        """The recommended optimizer at its LR; with `one_cycle`, driven by a schedule that warms up from
        base_lr to max_lr for pct_start of `total_steps` (your epochs * steps_per_epoch), then anneals."""
        import keras  # only here: see the module docstring

        p = plan(self.data)
        learning_rate: Any = p.learning_rate
        if one_cycle:
            warmup = int(p.pct_start * total_steps)
            learning_rate = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=p.base_lr, warmup_target=p.max_lr, warmup_steps=warmup,
                decay_steps=total_steps - warmup, alpha=p.final_lr / p.max_lr,
            )
        return getattr(keras.optimizers, p.keras_class)(learning_rate=learning_rate, **p.params)

    def __str__(self) -> str:
        reco = self.recommendation
        head = "" if not self.partial else f"PARTIAL ({self.status}): "
        start = f", starting from weights {self.weights['uri']}" if self.weights else ""
        if not reco or reco.get("learning_rate") is None:
            return f"{head}no recommendation (see the arms' diagnostics){start}"
        tail = f" (verified: {reco['criterion']})" if reco.get("verified") else ""
        return f"{head}{reco['optimizer']} at learning rate {reco['learning_rate']:.3g}{tail}{start}"
