"""The tutorial's two charts, loss vs LR and loss delta vs LR, for all arms of a (possibly partial) result,
and with `sweep.confirm` a third: every confirm candidate's held-out loss vs its LR.

matplotlib's bare `Figure` (never pyplot, so no backend is chosen: in a notebook, `RangeTestResult.plot`
leaves the user's backend alone) and no Keras, so the API renders `plot.png`/`plot.svg` from stored
results. Works on a running job's partial curves: arms without suggestions are drawn unmarked.
"""

from __future__ import annotations

import io
from typing import Any, Literal

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import ColorType

Kind = Literal["loss", "delta", "both"]
Format = Literal["png", "svg"]
MARKERS = {"steepest": "v", "valley": "o", "slide": "s", "minimum": "D"}
TITLES = {
    "loss": "Learning rate range test: loss vs learning rate",
    "delta": "Learning rate range test: loss delta vs learning rate",
}


def render(result: dict[str, Any], kind: Kind = "both", fmt: Format = "png") -> bytes:
    """PNG or SVG bytes of the chosen chart(s); `result` is the API result (or a partial one)."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}")
    buffer = io.BytesIO()
    figure(result, kind).savefig(buffer, format=fmt, dpi=100)
    return buffer.getvalue()


def figure(result: dict[str, Any], kind: Kind = "both") -> Figure:
    """The chart(s) as a matplotlib Figure (no pyplot: notebooks display it, `RangeTestResult.plot` saves it).

    The legend sits right of the axes, so no number of arms lets it cover a curve: one entry per arm,
    one per suggestion rule (its marker, in grey: the colour says the arm) and one for the dashed
    recommended-LR lines."""
    if kind not in ("loss", "delta", "both"):
        raise ValueError(f"kind must be 'loss', 'delta' or 'both', got {kind!r}")
    arms = result.get("arms") or []
    kinds: list[str] = ["loss", "delta"] if kind == "both" else [kind]
    if kind == "both" and any(arm.get("confirm") for arm in arms):
        kinds.append("confirm")
    fig = Figure(figsize=(10, 4.5 * len(kinds)))
    fig.subplots_adjust(left=0.08, right=0.74, top=0.94 if len(kinds) == 1 else 0.96,
                        bottom=0.1 if len(kinds) == 1 else 0.06, hspace=0.3)
    for axes, which in zip(fig.subplots(len(kinds), 1, squeeze=False)[:, 0], kinds):
        if which == "confirm":
            _draw_confirm(axes, arms)
        else:
            _draw(axes, arms, which, result.get("best_arm"))
    return fig


def _draw_confirm(axes: Axes, arms: list[dict[str, Any]]) -> None:
    """`sweep.confirm`'s third chart: every candidate of every arm, held-out loss vs its constant LR; the
    arm's winner starred, a candidate without a held-out loss (it hit NaN, or was stopped) as an x on
    the axis's floor, and the arm's bracket (enclosed, or the edge) in the legend."""
    scored_losses = [c["val_loss"] for arm in arms for c in arm.get("confirm") or [] if c.get("val_loss") is not None]
    floor = min(scored_losses, default=0.0)
    handles: list[Any] = []
    for arm in arms:
        rows = arm.get("confirm") or []
        if not rows:
            continue
        scored = [(c["lr"], c["val_loss"]) for c in rows if c.get("val_loss") is not None]
        bracket = arm.get("confirm_bracket") or {}
        where = "" if not bracket else " (enclosed)" if bracket.get("enclosed") else f" (winner at the {bracket.get('edge')} edge)"
        (line,) = axes.plot(*(zip(*scored) if scored else ([], [])), marker="o", linewidth=1, label=f"{arm.get('label', '')}{where}")
        handles.append(line)
        unscored = [c["lr"] for c in rows if c.get("val_loss") is None]
        if unscored:
            axes.scatter(unscored, [floor] * len(unscored), marker="x", color=line.get_color(), zorder=3)
        for c in rows:
            if c.get("winner"):
                axes.scatter([c["lr"]], [c["val_loss"]], marker="*", s=160, color=line.get_color(), edgecolors="black", zorder=4)
    axes.set_xscale("log")
    axes.set_xlabel("candidate learning rate (log scale)")
    axes.set_ylabel("held-out loss")
    axes.set_title("Confirm: each candidate's held-out loss (star: the arm's winner; x: not scored)")
    axes.grid(True, alpha=0.3)
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small",
                borderaxespad=0.0, frameon=False)


def _draw(axes: Axes, arms: list[dict[str, Any]], kind: str, best: str | None) -> None:
    handles: list[Any] = []
    rules_shown: set[str] = set()
    recommended_shown: list[str] = []
    ceiling = 0.0  # loss axis top: 1.5x the highest starting loss, so a diverged tail does not flatten the rest
    floor = float("inf")
    for arm in arms:
        lrs = arm.get("lrs") or []
        values = arm.get("losses") if kind == "loss" else arm.get("loss_deltas")
        points = [(lr, v) for lr, v in zip(lrs, values or []) if lr is not None and v is not None and lr > 0]
        if not points:
            continue
        floor = min(floor, min(v for _, v in points))
        label = str(arm.get("label", ""))
        (line,) = axes.plot(*zip(*points), linewidth=1.2, label=label)
        smoothed = [(lr, v) for lr, v in zip(lrs, arm.get("smoothed_losses") or []) if v is not None and lr > 0]
        if kind == "loss" and smoothed:
            line.set_alpha(0.35)
            line.set_label("_raw")
            (line,) = axes.plot(*zip(*smoothed), color=line.get_color(), linewidth=2, label=label)
            ceiling = max(ceiling, 1.5 * smoothed[0][1])
            points = smoothed
        handles.append(line)
        rules_shown |= _mark_suggestions(axes, arm, points, line.get_color())
        if arm.get("recommended_lr") is not None:
            recommended_shown.append(label)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel("loss" if kind == "loss" else "loss delta (moving average)")
    axes.set_title(TITLES[kind])
    axes.grid(True, alpha=0.3)
    if kind == "delta":
        axes.axhline(0.0, color="grey", linewidth=0.8)
    if ceiling > 0 and axes.get_ylim()[1] > ceiling:
        axes.set_ylim(floor - 0.05 * (ceiling - floor), ceiling)
    if not handles:
        axes.text(0.5, 0.5, "no steps recorded yet", ha="center", va="center", transform=axes.transAxes)
        return
    handles += [Line2D([], [], marker=MARKERS[rule], color="grey", markeredgecolor="black", linestyle="", label=rule)
                for rule in MARKERS if rule in rules_shown]
    if recommended_shown:
        best_lr = next((a.get("recommended_lr") for a in arms if a.get("label") == best), None)
        text = "recommended LR" + (f" ({best}: {best_lr:.2g})" if best_lr is not None else "")
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1, label=text))
    if kind == "loss" and any(a.get("smoothed_losses") for a in arms):
        handles.append(Line2D([], [], color="grey", alpha=0.35, linewidth=1.2, label="faint: each step's loss"))
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small",
                borderaxespad=0.0, frameon=False)


def _mark_suggestions(axes: Axes, arm: dict[str, Any], points: list[tuple[float, float]], color: ColorType) -> set[str]:
    """A marker per suggestion at the curve's value nearest that LR, and a dashed line at the arm's
    recommended LR; returns the rules marked."""
    marked = set()
    for rule, lr in (arm.get("suggestions") or {}).items():
        if lr is None or rule not in MARKERS:
            continue
        _, value = min(points, key=lambda p: abs(p[0] - lr))
        axes.scatter([lr], [value], marker=MARKERS[rule], color=color, edgecolors="black", zorder=3, s=40)
        marked.add(rule)
    if arm.get("recommended_lr") is not None:
        axes.axvline(arm["recommended_lr"], color=color, linestyle="--", linewidth=1)
    return marked
