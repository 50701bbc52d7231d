"""With many arms the PNG/SVG legend stays outside the curves and stays short: one entry per arm, one per
rule marker, one for the recommended-LR lines."""

from __future__ import annotations

import numpy as np

from lrrt.charts import MARKERS, figure
from lrrt.suggestions import analyze_arm

LABELS = ["sgd", "SGD momentum 0.9", "adam", "rmsprop", "adamw"]


def many_arms() -> dict:
    lrs = np.logspace(-4, 0, 80).tolist()
    arms = []
    for i, label in enumerate(LABELS):
        losses = (2 - np.tanh(np.log10(lrs) + 3 - 0.4 * i) + np.linspace(0, 3, 80) ** 4 / 30).tolist()
        arms.append({"label": label, "lrs": lrs, "losses": losses,
                     **analyze_arm(lrs, losses, smoothing=0.9, moving_average=10, stop_reason="completed",
                                   planned_steps=80)})
    return {"arms": arms, "best_arm": "adam"}


def test_legend_is_outside_the_axes_and_names_the_recommended_lr() -> None:
    fig = figure(many_arms(), "both")
    fig.canvas.draw()
    for axes in fig.axes:
        legend = axes.get_legend()
        texts = [t.get_text() for t in legend.get_texts()]
        assert texts[:len(LABELS)] == LABELS
        assert set(MARKERS) <= set(texts)
        assert any(t.startswith("recommended LR (adam: ") for t in texts)
        assert len(texts) <= len(LABELS) + len(MARKERS) + 2  # not one per arm and rule
        assert legend.get_window_extent().x0 >= axes.get_window_extent().x1  # never over a curve
