"""The tutorial's two charts, loss vs LR and loss delta vs LR, for all arms of a (possibly partial) result.

matplotlib with the Agg backend and no Keras, so the API renders `plot.png`/`plot.svg` from stored
results. Works on a running job's partial curves: arms without suggestions are drawn unmarked.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

Kind = Literal["loss", "delta", "both"]
Format = Literal["png", "svg"]
MARKERS = {"steepest": "v", "valley": "o", "slide": "s", "minimum": "D"}
TITLES = {
    "loss": "Learning rate range test: loss vs learning rate",
    "delta": "Learning rate range test: loss delta vs learning rate",
}


def render(result: dict[str, Any], kind: Kind = "both", fmt: Format = "png") -> bytes:
    """PNG or SVG bytes of the chosen chart(s); `result` is the API result (or a partial one)."""
    if kind not in ("loss", "delta", "both"):
        raise ValueError(f"kind must be 'loss', 'delta' or 'both', got {kind!r}")
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}")
    kinds = ["loss", "delta"] if kind == "both" else [kind]
    figure = Figure(figsize=(8, 4.5 * len(kinds)))
    figure.subplots_adjust(left=0.1, right=0.98, top=0.94 if len(kinds) == 1 else 0.96, bottom=0.1 if len(kinds) == 1 else 0.06, hspace=0.3)
    for axes, which in zip(figure.subplots(len(kinds), 1, squeeze=False)[:, 0], kinds):
        _draw(axes, result.get("arms") or [], which)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=100)
    return buffer.getvalue()


def _draw(axes: Axes, arms: list[dict[str, Any]], kind: str) -> None:
    drawn = False
    ceiling = 0.0  # loss axis top: 1.5x the highest starting loss, so a diverged tail does not flatten the rest
    floor = float("inf")
    for arm in arms:
        lrs = arm.get("lrs") or []
        values = arm.get("losses") if kind == "loss" else arm.get("loss_deltas")
        points = [(lr, v) for lr, v in zip(lrs, values or []) if lr is not None and v is not None and lr > 0]
        if not points:
            continue
        drawn = True
        floor = min(floor, min(v for _, v in points))
        (line,) = axes.plot(*zip(*points), linewidth=1.2, label=str(arm.get("label", "")))
        smoothed = [(lr, v) for lr, v in zip(lrs, arm.get("smoothed_losses") or []) if v is not None and lr > 0]
        if kind == "loss" and smoothed:
            line.set_alpha(0.35)
            axes.plot(*zip(*smoothed), color=line.get_color(), linewidth=2, label=f"{arm.get('label', '')} (smoothed)")
            ceiling = max(ceiling, 1.5 * smoothed[0][1])
            points = smoothed
        _mark_suggestions(axes, arm, points, line.get_color())
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel("loss" if kind == "loss" else "loss delta (moving average)")
    axes.set_title(TITLES[kind])
    axes.grid(True, alpha=0.3)
    if kind == "delta":
        axes.axhline(0.0, color="grey", linewidth=0.8)
    if ceiling > 0 and axes.get_ylim()[1] > ceiling:
        axes.set_ylim(floor - 0.05 * (ceiling - floor), ceiling)
    if drawn:
        axes.legend(loc="upper left", fontsize="x-small", ncol=2)
    else:
        axes.text(0.5, 0.5, "no steps recorded yet", ha="center", va="center", transform=axes.transAxes)


def _mark_suggestions(axes: Axes, arm: dict[str, Any], points: list[tuple[float, float]], color: str) -> None:
    """A marker per suggestion at the curve's value nearest that LR; the recommended one is labelled."""
    suggestions = arm.get("suggestions") or {}
    recommended = arm.get("recommended_lr")
    for rule, lr in suggestions.items():
        if lr is None or rule not in MARKERS:
            continue
        _, value = min(points, key=lambda p: abs(p[0] - lr))
        axes.scatter([lr], [value], marker=MARKERS[rule], color=color, edgecolors="black", zorder=3, s=40,
                     label=f"{arm.get('label', '')}: {rule} {lr:.2g}")
    if recommended is not None:
        axes.axvline(recommended, color=color, linestyle="--", linewidth=1)
