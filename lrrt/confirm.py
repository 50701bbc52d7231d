"""The confirm phase (`sweep.confirm`): which constant LRs an arm trains once its range test is over,
round by round, and how the measured winner becomes the job's recommendation.

A range test reads a curve; it cannot see overfitting, a loss that blows up over a longer budget, or
which optimizer trains further (docs/quality.md). Confirm measures instead: each candidate is a
training run at a constant LR, from the job's initial weights (seed `sweep.seed`) and with the job's
batch order, scored by its loss on the held-out rows. The lowest validation loss across every arm's
candidates wins, so the recommendation names both the optimizer and the LR that trained best.

The candidates of an arm are a search in log LR, in rounds (`round_of`): the first round trains the
recommendation and one candidate on each side of it; each later round trains one more candidate,
beyond the edge where the best one so far lies, or (when the best is enclosed by worse ones, but
coarsely) between it and its better neighbour, until a minimum is enclosed, the search reaches its
ceiling, or the arm's `confirm.candidates` are spent. The best constant LR lies below the range
test's pick on some tasks and above it on others (docs/quality.md, "Confirm"), so the bracket moves
both ways; upward it stops one bracket below the LR where the range test's loss was lowest
(`ceiling`): a candidate's short fit cannot see a loss that diverges later in a long training, and
that close to the range test's minimum it does (docs/quality.md, "Confirm search": the winners near
it diverged in a full training).

Slot s's LR is a pure function of the arm's range-test result and of the held-out losses of the
arm's earlier rounds (`slot_lr`), so a job whose confirm runs are spread over workers (each run works
out its own candidate from the stored curves and outcomes) trains the same LRs as a job run in one
process (`lrrt.inprocess`). Pure Python: the API assembles partial results with it too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from lrrt.result_model import RunOutcome
from lrrt.spec import JobSpec

#: Factor between neighbouring candidates (~0.5 decades: one step of bench/quality.py's ground-truth
#: grid, which is where the rules' misses lie).
BRACKET = 3.0
#: Candidates closer than this (in decades) are the same training: none is trained twice.
MIN_SEPARATION_DECADES = 0.15
#: Slots of the first round: the recommendation, one below it, one above it. Every later round is one slot.
FIRST_ROUND = 3
#: A rule's pick (valley, steepest, minimum) replaces the first round's bracket on its side when it lies
#: this many brackets from the recommendation (in log LR): where the rules disagree, try what they say.
RULE_BRACKETS = (0.5, 2.0)
#: A candidate counts only if it trained its whole budget to a finite held-out loss.
SCORED_STOP_REASONS = frozenset({"completed"})
UNVERIFIED = ("every confirm candidate hit a NaN loss or was stopped before its budget: lower end_lr, or set "
              "sweep.confirm.steps to a shorter budget")
CRITERION = "lowest held-out loss after {steps} steps at a constant learning rate from the job's initial weights"


def ceiling(arm: Mapping[str, Any], end_lr: float) -> float:
    """The highest LR an arm's confirm tries: one `BRACKET` below the LR of the range test's lowest
    (smoothed) loss, Smith's edge of divergence, but never below the recommendation itself. `end_lr`
    when the range test saw no minimum (its loss still fell at the last LR it swept)."""
    minimum, recommended = arm.get("min_loss_lr"), arm.get("recommended_lr")
    last = max((lr for lr in arm.get("lrs") or [] if lr), default=None)
    if not minimum or last is None or math.log10(last / minimum) < MIN_SEPARATION_DECADES:
        return end_lr
    return min(end_lr, max(float(minimum) / BRACKET, float(recommended or 0.0)))


def round_of(slot: int) -> int:
    """The round confirm slot `slot` belongs to: the first `FIRST_ROUND` slots are round 0, each later
    slot a round of its own (it needs every earlier candidate's held-out loss)."""
    return 0 if slot < FIRST_ROUND else slot - FIRST_ROUND + 1


def planned_lrs(arm: dict[str, Any], count: int, *, start_lr: float, end_lr: float,
                losses: Mapping[int, float | None]) -> list[float | None]:
    """The LRs of an arm's confirm slots that `losses` (each ended slot's held-out loss, None when it
    could not be scored or had no candidate) determines, in slot order: the first round's always, a
    later slot's once every slot before it has ended. None for a slot without a candidate: outside the
    swept range or above the `ceiling`, or the search is over (a minimum enclosed, or an edge reached). All None
    when the arm has no recommendation (its diagnostics say why): there is nothing to confirm.
    """
    recommended = arm.get("recommended_lr")
    if recommended is None:
        return [None] * count
    end_lr = ceiling(arm, end_lr)
    lrs = _first_round(float(recommended), arm.get("suggestions") or {}, count, start_lr=start_lr, end_lr=end_lr)
    over = False
    for slot in range(len(lrs), count):
        if not over and any(s not in losses for s in range(slot)):
            break  # an earlier round is still training: this slot's LR is not known yet
        tried = [(lr, losses[s]) for s, lr in enumerate(lrs) if lr is not None]
        lr = None if over else next_lr(tried, start_lr=start_lr, end_lr=end_lr)
        over = lr is None
        lrs.append(lr)
    return lrs


def _first_round(recommended: float, rules: dict[str, float | None], count: int, *, start_lr: float,
                 end_lr: float) -> list[float | None]:
    """The recommendation, then one candidate below and one above it: a rule's pick on that side when one
    lies `RULE_BRACKETS` from it, else one `BRACKET` away; each inside the swept range."""
    chosen: list[float] = []
    lrs: list[float | None] = []
    for side in (0, -1, 1)[: min(FIRST_ROUND, count)]:
        lr = recommended if side == 0 else _rule_pick(recommended, rules, side) or recommended * BRACKET**side
        placed = _placed(lr, chosen, start_lr=start_lr, end_lr=end_lr)
        lrs.append(placed)
        chosen += [placed] if placed is not None else []
    return lrs


def _rule_pick(recommended: float, rules: dict[str, float | None], side: int) -> float | None:
    """The rules' pick on `side` (-1 below, 1 above) nearest to one bracket from the recommendation,
    among those `RULE_BRACKETS` away from it; None when there is none."""
    low, high = RULE_BRACKETS
    picks = [(abs(d - 1), lr) for name in ("valley", "steepest", "minimum") if (lr := rules.get(name))
             for d in [side * math.log(lr / recommended) / math.log(BRACKET)] if low <= d <= high]
    return min(picks)[1] if picks else None


def next_lr(tried: list[tuple[float, float | None]], *, start_lr: float, end_lr: float) -> float | None:
    """The next round's LR from the candidates tried so far ((lr, held-out loss or None when it could not
    be scored)), or None when the search is over.

    Beyond the edge where the best one lies (one `BRACKET` further, clipped to the swept range); when
    none could be scored, below the lowest (they all blew up). When the best is enclosed by worse
    ones: between it and its farther neighbour if that gap is wider than a bracket (a rule's pick
    placed it there), else the minimum is enclosed and the search is over. None too when that LR is
    within `MIN_SEPARATION_DECADES` of one tried (the range's edge is reached).
    """
    lrs = sorted(lr for lr, _ in tried)
    scored = [(loss, lr) for lr, loss in tried if loss is not None]
    if not lrs:
        return None
    if not scored:
        return _placed(lrs[0] / BRACKET, lrs, start_lr=start_lr, end_lr=end_lr)
    best = min(scored)[1]
    i = lrs.index(best)
    if i == 0 or i == len(lrs) - 1:
        return _placed(best * BRACKET ** (-1 if i == 0 else 1), lrs, start_lr=start_lr, end_lr=end_lr)
    low, high = lrs[i - 1], lrs[i + 1]
    far = low if best / low > high / best else high
    if max(best / low, high / best) <= BRACKET * 1.01:
        return None  # enclosed at the bracket's resolution
    return _placed(math.sqrt(best * far), lrs, start_lr=start_lr, end_lr=end_lr)


def _placed(lr: float, tried: list[float], *, start_lr: float, end_lr: float) -> float | None:
    """`lr` clipped to the swept range, or None when that lies within `MIN_SEPARATION_DECADES` of a
    candidate tried: a job never trains the same LR twice."""
    lr = min(max(lr, start_lr), end_lr)
    return lr if all(abs(math.log10(lr / t)) >= MIN_SEPARATION_DECADES for t in tried) else None


def slot_lr(arm: dict[str, Any], spec: JobSpec, slot: int, losses: Mapping[int, float | None]) -> float | None:
    """The LR confirm slot `slot` of this arm trains at, from the arm's range-test result and its ended
    slots' held-out `losses` (`slot_losses`), or None when the slot has no candidate."""
    assert spec.sweep.confirm is not None
    lrs = planned_lrs(arm, spec.sweep.confirm.candidates, start_lr=spec.sweep.start_lr, end_lr=spec.sweep.end_lr,
                      losses=losses)
    assert slot < len(lrs), "a slot is released only once every earlier round of its arm has ended"
    return lrs[slot]


def score(outcome: RunOutcome) -> float | None:
    """A candidate's held-out loss, or None when it cannot win (not trained to its budget, no finite loss)."""
    loss = outcome.val_loss
    if outcome.stop_reason in SCORED_STOP_REASONS and loss is not None and math.isfinite(loss):
        return float(loss)
    return None


def slot_losses(confirmed: dict[tuple[int, int], RunOutcome], arm_index: int) -> dict[int, float | None]:
    """`score` of each ended confirm slot of one arm, by slot, from a job's confirm outcomes by (arm, slot)."""
    return {slot: score(outcome) for (index, slot), outcome in confirmed.items() if index == arm_index}


def entries(outcomes: Sequence[RunOutcome], rounds: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """An arm's `confirm` list from its confirm runs' outcomes, by LR, the arm's own winner marked.
    Slots with no candidate (`skipped`) are left out; `rounds[i]`, when given, is the round that trained
    `outcomes[i]`, kept in its row."""
    trained = sorted(((o.lr, o, None if rounds is None else rounds[i]) for i, o in enumerate(outcomes)
                      if o.lr is not None), key=lambda t: t[0])
    scored = [(loss, lr, i) for i, (lr, o, _) in enumerate(trained) if (loss := score(o)) is not None]
    best = min(scored)[2] if scored else None
    return [{"lr": lr, "val_loss": o.val_loss, "steps": o.steps or 0, "losses": o.losses or [],
             "stop_reason": o.stop_reason, "winner": i == best, **({} if trained_in is None else {"round": trained_in})}
            for i, (lr, o, trained_in) in enumerate(trained)]


def arm_entries(confirmed: dict[tuple[int, int], RunOutcome], arm_index: int) -> list[dict[str, Any]]:
    """`entries` of one arm from the ended confirm runs' outcomes of a job, keyed by (arm index, slot),
    each with the round that trained it."""
    slots = sorted(slot for index, slot in confirmed if index == arm_index)
    return entries([confirmed[(arm_index, slot)] for slot in slots], [round_of(slot) for slot in slots])


def bracket(rows: list[dict[str, Any]], spec: JobSpec, arm: Mapping[str, Any]) -> dict[str, Any] | None:
    """Whether an arm's winner (its `entries`, `arm` its range-test result) is enclosed by worse
    candidates on both sides, or lies at the low or high edge of what was tried, and then what to
    change; None without a winner."""
    assert spec.sweep.confirm is not None
    won = next((r for r in rows if r["winner"]), None)
    if won is None:
        return None
    lr = won["lr"]
    below, above = any(r["lr"] < lr for r in rows), any(r["lr"] > lr for r in rows)
    state: dict[str, Any] = {"enclosed": below and above, "edge": None, "candidates": len(rows),
                             "rounds": 1 + max((r.get("round") or 0) for r in rows), "advice": None}
    if below and above:
        return state
    edge = "high" if below else "low"
    bound = spec.sweep.end_lr if edge == "high" else spec.sweep.start_lr
    top = ceiling(arm, spec.sweep.end_lr)
    if edge == "high" and top < bound and abs(math.log10(lr / top)) < MIN_SEPARATION_DECADES:
        advice = ("the winner is at confirm's ceiling, a factor 3 below the LR of the range test's lowest loss "
                  "(min_loss_lr), where a constant LR is near divergence: set sweep.confirm.steps to your training "
                  "budget to check it over a whole training, or train a little below it")
    elif abs(math.log10(lr / bound)) < MIN_SEPARATION_DECADES:
        advice = (f"the winner is at the {edge} end of the swept range: "
                  f"{'raise end_lr' if edge == 'high' else 'lower start_lr'} so that confirm can try beyond it")
    elif len(rows) >= spec.sweep.confirm.candidates:
        advice = (f"the winner is the {'highest' if edge == 'high' else 'lowest'} of the {len(rows)} candidates: "
                  "raise sweep.confirm.candidates so that the search can go further")
    else:
        advice = (f"the winner is the {'highest' if edge == 'high' else 'lowest'} candidate and none "
                  f"{'above' if edge == 'high' else 'below'} it has trained yet: wait for the job's next confirm "
                  "round, or run the job to its end if it stopped")
    return state | {"edge": edge, "advice": advice}


def winner(arms: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(arm, candidate) with the lowest held-out loss across every arm's scored candidates, or None."""
    best = [(row["val_loss"], i, row) for i, arm in enumerate(arms) for row in arm.get("confirm") or [] if row["winner"]]
    if not best:
        return None
    _, index, row = min(best, key=lambda b: (b[0], b[1]))
    return arms[index], row
