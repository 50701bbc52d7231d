"""`sweep.confirm` in the dashboard: the form sends it only when ticked; the job page shows the confirm
phase's progress, each candidate's held-out loss (table and chart, the winner marked), and a
recommendation that says whether it was verified; a job cancelled while confirming keeps the candidates
that ran, with how each stopped.

The job pages are fed by `FakeWorker`, which plays `worker.tasks` on the store with made-up curves
(claims, chunks with their progress, run outcomes), step by step so the page can watch each one; the
candidates' LRs and the result are the coordinator's own (`lrrt.coordinator`), so
the page reads what a real worker leaves, in seconds and without Keras. The form's submissions go to the
real API, which must accept what the form sends.
"""

from __future__ import annotations

import copy
import math
import re
import time
from typing import Any

import httpx
import numpy as np
import pytest

from lrrt.coordinator import assembled, candidate_lr
from lrrt.progress import Chunk, JobProgress
from lrrt.reaper import partial_or_none
from lrrt.result_model import RunOutcome, RunReport
from lrrt.results import chunk_record
from lrrt.runs import run_of
from lrrt.spec import JobSpec
from lrrt.store.jobs import JobStore
from tests.fake_engine import figures
from tests.service.dashboard.conftest import API_KEY, screenshot

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SWEEP = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 100, "batch_size": 32}


class FakeWorker:
    """One job's runs, driven through the store as `worker.tasks` drives them, with made-up curves."""

    def __init__(self, store: JobStore, digits_mlp: dict[str, Any], arms: list[str], confirm: dict[str, int]) -> None:
        body = {"model": copy.deepcopy(digits_mlp), "dataset": {"uri": "builtin:digits", "validation_split": 0.2},
                "optimizers": [{"name": name} for name in arms], "sweep": {**SWEEP, "confirm": confirm}}
        self.store = store
        self.job = JobSpec.model_validate(body)
        self.id = store.create(tenant="alice", spec=self.job, max_unfinished=50).job.id
        self.tokens: dict[int, str] = {}

    def claim(self) -> int:
        token = self.store.new_token()
        assert self.store.claim(self.id, token, "fake").outcome == "claimed"
        held = self.store.run_held_by(self.id, token)
        assert held is not None
        self.tokens[held[0]] = token
        # Held for the whole test: the reaper of a session worker started by other tests must leave it alone.
        self.store.r.expire(self.store.k.lease(self.id, held[0]), 600)
        return held[0]

    def record(self, chunk: Chunk) -> None:
        self.store.record_chunk(self.id, lambda stored: JobProgress(self.job, stored).update(chunk), chunk_record(chunk))

    def range_tests(self, centers: list[float]) -> None:
        """Every arm's range test, to the end: a loss that falls around 10**center and blows up above it."""
        lrs = np.geomspace(SWEEP["start_lr"], SWEEP["end_lr"], SWEEP["num_steps"])
        x = np.log10(lrs)
        noise = np.random.default_rng(0).normal(0, 0.02, len(lrs))
        for center in centers:
            run = self.claim()
            losses = 2.3 - 1.6 / (1 + np.exp(-(x - center) * 3)) + np.exp((x - center - 1.2) * 3) + noise
            n = len(lrs)
            self.record(Chunk(run, self.job.optimizers[run].display_label, 0, 0, lrs.tolist(), losses.tolist(), None,
                              n, n, n * (run + 1), n * len(centers), state="done"))
            ended = self.store.end_run(self.id, run, self.tokens[run],
                                       RunReport(outcome=RunOutcome(stop_reason="completed"), figures=figures(n)))
        assert ended == "confirm"  # the last range test released the confirm runs

    def candidate(self, stop_reason: str | None, steps: int, val_loss: float | None = None) -> tuple[int, float]:
        """The next confirm run: its candidate LR from the stored curves (as each worker works it out),
        `steps` of training, then its outcome (None: still training). Returns (run, lr)."""
        run = self.claim()
        ref = run_of(self.job, run)
        assert ref.slot is not None
        lr = candidate_lr(self.store, self.id, self.job, ref)
        assert lr is not None
        losses = np.linspace(2.0, 0.4 if stop_reason == "completed" else 9.0, steps).tolist()
        state = {"completed": "done", None: "running"}.get(stop_reason, stop_reason)
        self.record(Chunk(ref.arm_index, self.job.optimizers[ref.arm_index].display_label, 0, 0, [lr] * steps, losses,
                          None, steps, self.budget, 0, 0, state=state, candidate=ref.slot))  # type: ignore[arg-type]
        if stop_reason is not None:
            self.end(run, RunReport(outcome=RunOutcome(lr=lr, val_loss=val_loss, steps=steps, losses=losses,
                                                       stop_reason=stop_reason), figures=figures(steps)))
        return run, lr

    @property
    def budget(self) -> int:
        assert self.job.sweep.confirm is not None
        return self.job.sweep.confirm.steps or SWEEP["num_steps"]

    def end(self, run: int, report: RunReport, abandon: str = "") -> str:
        return self.store.end_run(self.id, run, self.tokens[run], report, abandon)

    def finish(self, status: str) -> dict[str, Any]:
        """The last run's part, as the coordinator does it: the result from every run's chunks and outcome."""
        stopped, assembled_result = assembled(self.store, self.id, self.job, time.time(), None)
        assert stopped == ("cancelled" if status == "cancelled" else None)
        result = assembled_result.api()  # the store keeps JSON, as the coordinator's `_finish` does
        assert self.store.finish(self.id, status, result=result)
        return result


def test_a_verified_recommendation_shows_its_candidates_and_the_range_test_lr(
        new_page: Any, store: JobStore, digits_mlp: dict[str, Any]) -> None:
    fake = FakeWorker(store, digits_mlp, ["sgd", "adam"], {"candidates": 3, "steps": 50})
    fake.range_tests([-1.5, -2.5])
    # Slots: the range test's pick, a third of it, three times it. Adam's third wins overall.
    for stop, val in (("completed", 0.9), ("completed", 0.7), ("diverged", None),
                      ("completed", 0.55), ("completed", 0.48), ("completed", 0.6)):
        fake.candidate(stop, 50 if stop == "completed" else 31, val)
    result = fake.finish("succeeded")
    reco = result["recommendation"]
    assert reco["verified"] is True and reco["optimizer"] == "adam"
    assert not math.isclose(reco["learning_rate"], reco["range_test_lr"])

    page = new_page()
    page.goto(f"/#/jobs/{fake.id}")
    card = page.locator("[data-testid=recommendation-card]")
    card.wait_for()
    verification = card.locator("[data-testid=verification]")
    assert verification.get_attribute("data-verified") == "true"
    assert verification.inner_text().startswith("Verified by training") and reco["criterion"] in verification.inner_text()
    lr_text = card.locator("[data-testid=recommended-lr]").inner_text()
    assert float(lr_text) == pytest.approx(reco["learning_rate"], rel=0.01)
    assert float(card.locator("[data-testid=range-test-lr]").inner_text()) == pytest.approx(reco["range_test_lr"], rel=0.01)
    assert "confirm" in card.inner_text()  # the rule that chose it
    code = card.locator("[data-testid=keras-code]").inner_text()
    assert f"learning_rate={lr_text}," in code  # the copy-ready code trains at the verified LR

    table = page.locator("[data-testid=confirm-table]")
    table.wait_for()
    rows = table.locator("[data-testid=confirm-row]")
    assert rows.count() == 6
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(6)]
    assert [c[0] for c in cells] == ["sgd"] * 3 + ["adam"] * 3
    assert [c[1] for c in cells] == ["1"] * 6  # the first round's: 3 candidates are one round
    lrs = [float(c[2]) for c in cells]
    assert lrs[:3] == sorted(lrs[:3]) and lrs[3:] == sorted(lrs[3:])  # by LR within each arm
    assert [c[6] for c in cells].count("stopped when the loss diverged") == 1
    assert all(c[5] in ("50 of 50", "31 of 50") for c in cells)
    winners = [(c[0], c[3]) for i, c in enumerate(cells) if rows.nth(i).get_attribute("data-winner") == "true"]
    assert winners == [("sgd", "0.7000 ★ best of arm"), ("adam", "0.4800 ★ recommended")]
    assert table.locator("[data-testid=confirm-winner]").count() == 2
    recommended = table.locator("[data-recommended=true]")
    assert recommended.count() == 1 and float(recommended.locator("td").nth(2).inner_text()) == float(lr_text)
    # Both winners are their arm's lowest candidate: each arm says so, and what to change
    brackets = page.locator("[data-testid=confirm-bracket]")
    assert brackets.count() == 2 and {brackets.nth(i).get_attribute("data-enclosed") for i in range(2)} == {"false"}
    assert "low edge" in brackets.nth(0).inner_text() and "raise sweep.confirm.candidates" in brackets.nth(1).inner_text()

    chart = page.locator("[data-testid=confirm-chart]")
    assert chart.get_attribute("data-points") == "5"  # the diverged candidate has no held-out loss
    page.wait_for_function("() => document.querySelector('[data-testid=confirm-chart]').dataset.labels === '2'")
    screenshot(page, "job-confirm-verified")

    page.click("text=← All jobs")
    row = page.locator(f"tr[data-job-id='{fake.id}']")
    page.wait_for_function(f"() => document.querySelector(\"tr[data-job-id='{fake.id}'] [data-testid=verified]\")")
    assert row.locator("[data-testid=recommended-lr]").inner_text() == lr_text


def test_the_confirm_phase_shows_its_progress_and_a_cancel_keeps_what_ran(
        new_page: Any, store: JobStore, digits_mlp: dict[str, Any]) -> None:
    fake = FakeWorker(store, digits_mlp, ["sgd", "adam"], {"candidates": 2, "steps": 2000})
    fake.range_tests([-1.5, -2.5])
    page = new_page()
    page.goto(f"/#/jobs/{fake.id}")
    phase = page.locator("[data-testid=progress-phase][data-phase=sweep]")
    phase.wait_for()
    assert phase.inner_text().startswith("Range test first")

    # The candidates come in while the page watches (the event stream delivers them in order).
    fake.candidate("diverged", 400)
    fake.candidate("nan", 120)
    training, training_lr = fake.candidate(None, 300)  # adam's first candidate, a sixth of the way
    # steps_total counts every confirm slot: 2 arms x 100 range-test steps + 2 arms x 2 slots x 2000
    page.wait_for_function("() => document.querySelector('[data-testid=progress-text]').textContent"
                           ".startsWith('1020 of 8200 steps')")
    phase = page.locator("[data-testid=progress-phase]")
    assert phase.get_attribute("data-phase") == "confirm" and "verifying" in phase.inner_text()
    assert page.locator("[data-testid=progress-panel] h2").inner_text() == "Verifying"
    cards = page.locator("[data-testid=confirm-progress] .arm-card")
    assert cards.count() == 3
    assert [cards.nth(i).locator(".arm-state").inner_text().lower() for i in range(3)] == ["diverged", "nan", "running"]
    assert "candidate 1" in cards.nth(2).inner_text() and "step 300 of 2000" in cards.nth(2).inner_text()
    ranges = page.locator("[data-testid=progress-panel] .arm-progress").first.locator(".progress > span")
    assert ranges.evaluate_all("bars => bars.map((bar) => bar.style.width)") == ["100%", "100%"]  # not out of the confirm steps
    # The candidates that ended are in the table already (the partial result).
    page.wait_for_function("() => document.querySelectorAll('[data-testid=confirm-row]').length === 2")
    screenshot(page, "job-confirming")

    with page.expect_response(lambda r: r.url.endswith(f"/v1/jobs/{fake.id}/cancel")) as cancelled:
        page.click("[data-testid=cancel-button]")
    assert cancelled.value.status == 202 and store.cancel_requested(fake.id)
    # The training candidate stops at its next chunk; the slot that never started ends with it.
    assert fake.end(training, RunReport(outcome=RunOutcome(lr=training_lr, val_loss=None, steps=340, losses=[1.0] * 340,
                                                           stop_reason="cancelled"), figures=figures(340)),
                    abandon="cancelled") == "last"
    result = fake.finish("cancelled")
    assert result["recommendation"]["verified"] is False
    assert partial_or_none(store, fake.id, fake.job, "cancelled") is not None

    page.wait_for_function(
        "() => document.querySelector('[data-testid=job-status]').classList.contains('cancelled')")
    page.wait_for_selector("[data-testid=recommendation-card]")
    rows = page.locator("[data-testid=confirm-row]")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=confirm-row]').length === 3")
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(3)]
    assert sorted(c[6] for c in cells) == ["cancelled", "stopped at a NaN loss", "stopped when the loss diverged"]
    assert [c[5] for c in cells if c[6] == "cancelled"] == ["340 of 2000"]
    assert all(c[3] == "—" for c in cells)  # nothing scored, no winner
    assert page.locator("[data-testid=confirm-row][data-winner=true]").count() == 0
    chart = page.locator("[data-testid=confirm-chart]")
    assert chart.get_attribute("data-points") == "0" and chart.locator(".chart-empty").inner_text() == (
        "No candidate has a held-out loss yet")
    assert phase.inner_text() == "Stopped while verifying, after 3 candidates started."
    verification = page.locator("[data-testid=verification]")
    assert verification.get_attribute("data-verified") == "false"
    text = verification.inner_text()
    assert text.startswith("Not verified") and "confirm could not verify it" in text
    assert page.locator("[data-testid=range-test-lr]").count() == 0
    assert "did not finish" in page.locator("[data-testid=recommendation-card]").inner_text()
    screenshot(page, "job-confirm-cancelled")


def test_the_form_sends_confirm_only_when_ticked(new_page: Any, dashboard_url: str) -> None:
    page = new_page()
    sent = []
    for settings, summary in ((None, "off"), ({}, "5 × default steps per arm"),
                              ({"candidates": "2", "steps": "30"}, "2 × 30 steps per arm")):
        page.goto("/#/new")
        page.wait_for_selector("[data-testid=submit-form]")
        candidates, steps = page.locator("#f-sweep\\.confirm\\.candidates"), page.locator("#f-sweep\\.confirm\\.steps")
        # Built from the schema's Confirm definition (behind `anyOf: [$ref, null]`); off until ticked.
        assert candidates.input_value() == "5" and candidates.get_attribute("max") == "8"
        assert steps.input_value() == "" and steps.get_attribute("min") == "1"
        assert candidates.is_disabled() and steps.is_disabled()
        page.click("[data-testid=example-model]")
        page.wait_for_selector(".model-summary.ok")
        page.fill("#f-sweep\\.num_steps", "20")
        if settings is not None:
            page.check("#f-sweep\\.confirm")
            for name, value in settings.items():
                page.fill(f"#f-sweep\\.confirm\\.{name}", value)
        assert page.locator(".summary-list li").filter(has_text="Verify").locator("span").last.inner_text() == summary
        if settings:
            screenshot(page, "submit-confirm")
        with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/jobs")) as request:
            page.click("[data-testid=submit-button]")
        page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
        job_id = page.url.rsplit("/", 1)[1]
        httpx.post(f"{dashboard_url}/v1/jobs/{job_id}/cancel", headers=AUTH)  # never needs to run
        stored = httpx.get(f"{dashboard_url}/v1/jobs/{job_id}", headers=AUTH).json()["spec"]["sweep"]["confirm"]
        sent.append((request.value.post_data_json["sweep"].get("confirm", "not sent"), stored))
    assert sent == [("not sent", None), (True, {"candidates": 5, "steps": None}),
                    ({"candidates": 2, "steps": 30}, {"candidates": 2, "steps": 30})]


@pytest.mark.usefixtures("dashboard_worker")
def test_a_real_confirm_job_from_the_form_to_its_verified_result(new_page: Any, dashboard_url: str) -> None:
    """The same pages on what a real worker records: submitted through the form with confirm ticked."""
    page = new_page()
    page.goto("/#/new")
    page.wait_for_selector("[data-testid=submit-form]")
    page.click("[data-testid=example-model]")
    page.wait_for_selector(".model-summary.ok")
    page.check("#f-dataset\\.normalize")
    page.click("[data-testid=add-optimizer]")
    for name, value in (("start_lr", "1e-4"), ("end_lr", "1"), ("num_steps", "80"), ("batch_size", "32")):
        page.fill(f"#f-sweep\\.{name}", value)
    page.check("#f-sweep\\.confirm")
    page.fill("#f-sweep\\.confirm\\.candidates", "2")
    page.fill("#f-sweep\\.confirm\\.steps", "40")
    page.click("[data-testid=submit-button]")
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]
    page.locator("[data-testid=recommendation-card]").wait_for(timeout=240_000)

    result = httpx.get(f"{dashboard_url}/v1/jobs/{job_id}/result", headers=AUTH).json()
    assert result["status"] == "succeeded"
    reco = result["recommendation"]
    rows = [(arm["label"], row) for arm in result["arms"] for row in arm["confirm"]]
    assert len(rows) == 4  # 2 arms x 2 candidates
    page.wait_for_selector("[data-testid=confirm-table]")
    shown = page.locator("[data-testid=confirm-row]")
    assert shown.count() == len(rows)
    for i, (label, row) in enumerate(rows):
        assert shown.nth(i).get_attribute("data-arm") == label
        assert float(shown.nth(i).get_attribute("data-lr")) == row["lr"]
        assert shown.nth(i).get_attribute("data-winner") == str(row["winner"]).lower()
    verification = page.locator("[data-testid=verification]")
    assert verification.get_attribute("data-verified") == str(reco["verified"]).lower()
    assert reco["criterion"] in verification.inner_text()
    assert float(page.locator("[data-testid=recommended-lr]").inner_text()) == pytest.approx(reco["learning_rate"], rel=0.01)
    if reco["verified"]:
        assert page.locator("[data-testid=confirm-row][data-recommended=true]").count() == 1
        assert float(page.locator("[data-testid=range-test-lr]").inner_text()) == pytest.approx(reco["range_test_lr"], rel=0.01)
    scored = sum(row["val_loss"] is not None for _, row in rows)
    assert page.locator("[data-testid=confirm-chart]").get_attribute("data-points") == str(scored)
    screenshot(page, "job-confirm-real")
