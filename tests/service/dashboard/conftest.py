"""Browser-test fixtures: the API with the dashboard served by uvicorn in a thread, a real `lrrt worker`
subprocess (Celery, Keras on the CPU), and Debian's headless Chromium driven by Playwright.

Everything runs on this session's Redis prefix and queue (tests/conftest.py). Screenshots go to
`test-artifacts/dashboard/` at the repository root (gitignored), for people to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn

from lrrt.settings import Settings
from lrrt.store.keys import Keys
from service.app import create_app
from tests.e2e.conftest import free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
CHROMIUM = os.environ.get("LRRT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
API_KEY = "key-alice"  # tenant alice in tests/conftest.py's settings


@pytest.fixture(scope="session")
def dashboard_url(settings: Settings) -> Iterator[str]:
    """The API (which serves the dashboard at `/`) on a free loopback port, in this process (uvicorn in a
    thread, so a failing route shows its traceback in the test output)."""
    app = create_app(settings, reaper_interval_s=None)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: server.started, 30, "uvicorn to start")
    yield url
    server.should_exit = True
    thread.join(15)


@pytest.fixture(scope="session")
def dashboard_worker(settings: Settings, redis_client: redis.Redis,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    """One warm `lrrt worker` for the session, on this session's prefix, queue and data root.

    (The same process tests/e2e/conftest.py starts as `worker_proc`; kept here until that fixture
    moves to tests/conftest.py, since conftest fixtures do not cross sibling directories.)
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRRT_")}
    env.update(
        LRRT_REDIS_URL=settings.redis_url, LRRT_KEY_PREFIX=settings.key_prefix, LRRT_QUEUE=settings.queue,
        LRRT_DATA_ROOT=str(settings.data_root), LRRT_API_KEYS=settings.api_keys,
        LRRT_MAX_UNFINISHED_JOBS=str(settings.max_unfinished_jobs),
        PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
    )
    hostname = f"dashboard-{settings.key_prefix}@{socket.gethostname()}"
    heartbeat = Keys(settings.key_prefix).worker_heartbeat(hostname)
    log_path = tmp_path_factory.mktemp("logs") / "worker.log"
    redis_client.delete(heartbeat)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--concurrency", "1", "--hostname", hostname,
             "--loglevel", "INFO"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
        )

    def tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])

    wait_until(lambda: redis_client.exists(heartbeat) or proc.poll() is not None, 120, "the worker's heartbeat")
    if proc.poll() is not None:
        pytest.fail(f"the worker exited while starting:\n{tail()}")
    yield proc
    for sig, wait in ((signal.SIGQUIT, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            break
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium (apt-get install chromium), driven by Playwright; no browser download."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium "
                    "(or set LRRT_CHROMIUM to its path)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class ConsoleLog:
    """Errors the page reported: console.error calls, uncaught exceptions and failed loads."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[str] = []

    def allow(self, fragment: str) -> None:
        """Expect errors containing `fragment` (the 401 before an API key is entered, say)."""
        self.allowed.append(fragment)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(fragment in e for fragment in self.allowed)]


@pytest.fixture()
def console() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture()
def new_page(browser: Any, dashboard_url: str, console: ConsoleLog) -> Iterator[Callable[..., Any]]:
    """Open pages in fresh browser contexts (`with_key=False` starts without a saved API key).

    After the test, any console error nobody allowed fails it."""
    contexts = []

    def open_page(*, with_key: bool = True, width: int = 1440, height: int = 1000) -> Any:
        context = browser.new_context(base_url=dashboard_url, viewport={"width": width, "height": height},
                                      accept_downloads=True)
        if with_key:
            context.add_init_script(f"localStorage.setItem('lrrt.apiKey', {json.dumps(API_KEY)})")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda msg: msg.type == "error" and console.errors.append(f"console: {msg.text}"))
        page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
        page.on("requestfailed", lambda req: _failed(console, req))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert console.unexpected() == [], "the browser reported errors"


def _failed(console: ConsoleLog, request: Any) -> None:
    # Streams the page closes itself (leaving a job page) end as aborted requests: not errors.
    if "ERR_ABORTED" not in (request.failure or ""):
        console.errors.append(f"request failed: {request.method} {request.url}: {request.failure}")


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save `test-artifacts/dashboard/<name>.png`. A full page is taken by growing the viewport to the
    document's height (Chromium's own full-page capture repeats the sticky header mid-page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight") if full_page else size["height"]
    if height > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(200)
    page.screenshot(path=str(path))
    if height > size["height"]:
        page.set_viewport_size(size)
    return path


@pytest.fixture(scope="session")
def digits_mlp() -> dict[str, Any]:
    return json.loads((REPO / "service" / "dashboard" / "static" / "examples" / "digits-mlp.json").read_text())
