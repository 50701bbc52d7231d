"""Server-Sent Events (replay, resume with Last-Event-ID, live follow) and the PNG/SVG charts."""

from __future__ import annotations

import json
import threading
import time

from fastapi.testclient import TestClient

from tests.service.api.conftest import ALICE, FakeWorker, result_for, submit


def parse_sse(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields:
            events.append(fields)
    return events


def test_events_replay_and_resume(client: TestClient, worker: FakeWorker) -> None:
    job = submit(client)
    worker.start(job["id"])
    worker.chunk(job["id"], 0, "SGD", 0, 10)
    worker.chunk(job["id"], 1, "adam", 0, 10)
    worker.finish(job["id"], "succeeded", result=result_for(["SGD", "adam"]))

    response = client.get(f"/v1/jobs/{job['id']}/events", headers=ALICE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert [e["event"] for e in events] == ["status", "status", "progress", "progress", "status"]
    assert [json.loads(e["data"]).get("status") for e in events if e["event"] == "status"] == [
        "queued", "running", "succeeded"]
    assert [(a["label"], a["steps_done"]) for a in json.loads(events[3]["data"])["arms"]] == [("SGD", 10), ("adam", 10)]
    assert all(e["id"] for e in events)

    resumed = client.get(f"/v1/jobs/{job['id']}/events", headers={**ALICE, "Last-Event-ID": events[2]["id"]})
    assert [e["id"] for e in parse_sse(resumed.text)] == [e["id"] for e in events[3:]]

    # Resuming after the final event still ends with the terminal status, then closes.
    after_end = client.get(f"/v1/jobs/{job['id']}/events", headers={**ALICE, "Last-Event-ID": events[-1]["id"]})
    tail = parse_sse(after_end.text)
    assert [(e["event"], json.loads(e["data"])["status"]) for e in tail] == [("status", "succeeded")]

    bad = client.get(f"/v1/jobs/{job['id']}/events", headers={**ALICE, "Last-Event-ID": "yesterday"})
    assert bad.status_code == 422


def test_events_follow_a_running_job_until_it_ends(client: TestClient, worker: FakeWorker) -> None:
    job = submit(client)
    worker.start(job["id"])

    def work() -> None:
        time.sleep(0.3)
        worker.chunk(job["id"], 0, "SGD", 0, 10)
        time.sleep(0.2)
        worker.finish(job["id"], "cancelled")

    thread = threading.Thread(target=work)
    thread.start()
    with client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=ALICE) as response:
        text = "".join(response.iter_text())
    thread.join()
    names = [(e["event"], json.loads(e["data"]).get("status")) for e in parse_sse(text)]
    assert names == [("status", "queued"), ("status", "running"), ("progress", None), ("status", "cancelled")]


def test_plots_png_and_svg(client: TestClient, worker: FakeWorker) -> None:
    job = submit(client)
    base = f"/v1/jobs/{job['id']}"
    queued = client.get(f"{base}/plot.png", headers=ALICE)
    assert queued.status_code == 409 and queued.headers["content-type"] == "application/problem+json"
    worker.start(job["id"])
    assert client.get(f"{base}/plot.png", headers=ALICE).status_code == 409  # running, no step yet
    worker.chunk(job["id"], 0, "SGD", 0, 10)
    live = client.get(f"{base}/plot.png?kind=loss", headers=ALICE)
    assert live.status_code == 200 and live.content.startswith(b"\x89PNG")
    assert live.headers["cache-control"] == "no-store"
    worker.finish(job["id"], "succeeded", result=result_for(["SGD", "adam"]))
    svg = client.get(f"{base}/plot.svg?kind=both", headers=ALICE)
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in svg.content and b"SGD" in svg.content
    assert client.get(f"{base}/plot.png?kind=bars", headers=ALICE).status_code == 422
