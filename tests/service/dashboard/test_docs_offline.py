"""`/docs` renders from the Swagger UI files shipped with the package: in headless Chromium, with every
request that would leave 127.0.0.1 aborted and failing the test."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.service.dashboard.conftest import ConsoleLog, screenshot


def test_docs_render_with_the_network_off(browser: Any, dashboard_url: str, console: ConsoleLog) -> None:
    context = browser.new_context(base_url=dashboard_url, viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def only_loopback(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and console.errors.append(f"console: {msg.text}"))
    try:
        page.goto("/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
        assert "Learning Rate Range Test" in page.locator(".swagger-ui .info .title").inner_text()
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/v1/jobs/{job_id}/result.csv" in [op.replace("\u200b", "") for op in operations]
        screenshot(page, "api-docs-offline", full_page=False)
    finally:
        context.close()
    assert outside == [], "the docs page asked for something outside 127.0.0.1"
    assert console.unexpected() == []
