"""The dashboard's routes without a browser: the page, its assets, the form description, and the
promises that let it run inside closed networks (no CDN, a pinned and licensed chart library) and in
the API process (no TensorFlow or Keras import)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lrrt.settings import Settings
from lrrt.spec import OPTIMIZER_NAMES, JobSpec
from service.app import create_app
from service.dashboard.routes import STATIC_DIR

VENDOR = STATIC_DIR / "vendor"


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, reaper_interval_s=None)) as test_client:
        yield test_client


def test_the_page_is_served_at_the_root_without_a_key(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/dashboard/js/main.js">' in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp


@pytest.mark.parametrize(("path", "media"), [
    ("/dashboard/js/main.js", "text/javascript"),
    ("/dashboard/app.css", "text/css"),
    ("/dashboard/vendor/uPlot.iife.min.js", "text/javascript"),
    ("/dashboard/favicon.svg", "image/svg+xml"),
    ("/dashboard/examples/digits-mlp.json", "application/json"),
])
def test_assets_are_served_and_revalidated(client: TestClient, path: str, media: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)
    assert response.headers["cache-control"] == "no-cache"
    again = client.get(path, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/dashboard/nope.js", "/dashboard/..%2Froutes.py", "/dashboard/%2e%2e/routes.py"])
def test_nothing_outside_the_static_folder_is_served(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_the_form_is_described_by_the_job_spec(client: TestClient) -> None:
    form = client.get("/dashboard/form.json").json()
    assert form["schema"] == JobSpec.model_json_schema()
    assert form["optimizers"] == sorted(OPTIMIZER_NAMES)
    assert form["default_optimizers"] == [{"name": "adam", "params": {}}]
    assert form["default_num_steps"] == 200
    assert "builtin:digits" in form["datasets"]


def test_every_asset_is_local() -> None:
    """No CDN: the page references only its own origin (users run it inside closed networks)."""
    remote = re.compile(r"""(?:src|href|url\(|import[^'"]*from)\s*=?\s*['"]?(?:https?:)?//""", re.I)
    for path in STATIC_DIR.rglob("*"):
        if path.suffix in {".html", ".js", ".css"}:
            assert not remote.search(path.read_text(encoding="utf-8")), f"{path} loads something remote"


def test_the_chart_library_is_pinned_and_licensed() -> None:
    header = (VENDOR / "uPlot.iife.min.js").read_text(encoding="utf-8").splitlines()[0]
    version = re.search(r"\(v(\d+\.\d+\.\d+)\)", header)
    assert version, header
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    assert f"| {version.group(1)} |" in readme, "vendor/README.md must name the vendored version"
    assert "MIT License" in (VENDOR / "uPlot.LICENSE").read_text(encoding="utf-8")


def test_the_dashboard_imports_no_tensorflow_or_keras() -> None:
    code = ("import sys, service.dashboard; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])
