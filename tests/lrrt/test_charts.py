"""Charts render valid PNG and SVG for full and partial results, all arms on one log-scaled axis."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lrrt.charts import render
from lrrt.suggestions import analyze_arm

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def full_result() -> dict:
    lrs = np.logspace(-4, 0, 80).tolist()
    arms = []
    for label, shift in (("SGD optimizer", 1.0), ("Adam optimizer", -1.0)):
        losses = (2 - np.tanh(np.log10(lrs) + 2 - shift) + np.linspace(0, 3, 80) ** 4 / 30).tolist()
        arms.append({"label": label, "lrs": lrs, "losses": losses,
                     **analyze_arm(lrs, losses, smoothing=0.9, moving_average=10, stop_reason="completed", planned_steps=80)})
    return {"arms": arms}


@pytest.mark.parametrize("kind", ["loss", "delta", "both"])
def test_png_and_svg(kind: str) -> None:
    result = full_result()
    png = render(result, kind, "png")
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    svg = render(result, kind, "svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and svg.rstrip().endswith("</svg>")
    assert "SGD optimizer" in svg and "Adam optimizer" in svg
    if kind != "delta":
        assert "valley" in svg  # suggestions are marked and named in the legend


def test_the_confirm_candidates_get_a_chart_of_their_own() -> None:
    """Every candidate is drawn, the unscored one too, with each arm's bracket in the legend."""
    result = full_result()
    rows = [{"lr": lr, "val_loss": loss, "winner": lr == 1e-2, "round": 0} for lr, loss in ((3e-3, 0.6), (1e-2, 0.4), (3e-2, None))]
    result["arms"][0] |= {"confirm": rows, "confirm_bracket": {"enclosed": True, "edge": None}}
    result["arms"][1] |= {"confirm": rows[:2], "confirm_bracket": {"enclosed": False, "edge": "high"}}
    svg = render(result, "both", "svg").decode()
    assert "Confirm: each candidate" in svg and "SGD optimizer (enclosed)" in svg
    assert "Adam optimizer (winner at the high edge)" in svg
    assert "Confirm" not in render(result, "loss", "svg").decode()


def test_partial_and_empty_results_render() -> None:
    partial = {"arms": [{"label": "running", "lrs": [1e-4, 2e-4, 4e-4], "losses": [2.3, None, 2.2]},
                        {"label": "pending", "lrs": [], "losses": []}]}
    assert render(partial, "both", "png").startswith(PNG_MAGIC)
    assert b"no steps recorded yet" in render({"arms": []}, "loss", "svg")


def test_bad_arguments_and_no_keras() -> None:
    with pytest.raises(ValueError):
        render(full_result(), "pie", "png")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        render(full_result(), "loss", "gif")  # type: ignore[arg-type]
    import subprocess

    probe = ("import sys, lrrt.charts, lrrt.suggestions, lrrt.vetting.allowlist, "
             "lrrt.vetting.keras2, lrrt.problems, lrrt.progress; "
             "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", probe], check=True)
