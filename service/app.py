"""`create_app(settings)`: the FastAPI application, with its stores, middleware and background reaper.

Everything is built from the `Settings` passed in (tests pass their own; `lrrt api` passes the
environment's), kept on `app.state`, and reached by routes through `service.api.deps`. Importing this
module must never import TensorFlow or Keras (a test checks it in a fresh interpreter).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis
import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from lrrt import __version__
from lrrt.queue import make_celery
from lrrt.settings import Settings, get_settings
from lrrt.spec import JobSpec
from lrrt.store.fleet import Fleet
from lrrt.store.jobs import store_from_settings
from lrrt.store.keys import Keys
from service import dashboard
from service.api.routes import datasets, jobs, ops, weights
from service.datasets import DatasetStore, WeightsStore
from service.limits import BodyLimitMiddleware
from service.metrics import Metrics, MetricsMiddleware
from service.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from service.reaper_thread import ReaperThread
from service.routing import LiveBackends

#: Multipart framing around an uploaded file (boundaries, part headers) on top of the dataset cap.
UPLOAD_OVERHEAD_BYTES = 64 * 1024
#: Where `/docs` loads Swagger UI from: the files the swagger-ui-bundle-v2 package ships, never a CDN,
#: so the docs page works on a machine without internet.
DOCS_ASSETS = "/docs/assets"
#: Concurrent `/events` streams that may each hold a thread in a blocking Redis read.
EVENT_STREAM_THREADS = 200

DESCRIPTION = """\
Submit a Keras model (its `to_json()`) and a dataset; workers sweep the learning rate for every optimizer
you list and report per-step loss curves, suggested learning rates with the rule behind each, and
(base_lr, max_lr) bounds for cyclical and one-cycle schedules.

Authenticate with `Authorization: Bearer <api key>`. Every error is `application/problem+json`
(RFC 9457) with a `detail` that says what to change.
"""


def create_app(settings: Settings | None = None, *, reaper_interval_s: float | None = 10.0) -> FastAPI:
    """The API. `reaper_interval_s=None` disables the orphan-reaping thread (workers reap as well)."""
    settings = settings or get_settings()
    store = store_from_settings(settings)
    text_redis = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=10)
    celery = make_celery(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.events_limiter = anyio.CapacityLimiter(EVENT_STREAM_THREADS)
        reaper = ReaperThread(store, celery, settings, reaper_interval_s) if reaper_interval_s else None
        if reaper:
            reaper.start()
        try:
            yield
        finally:
            if reaper:
                reaper.stop()

    app = FastAPI(
        title="lrrt: Learning Rate Range Test",
        version=__version__,
        summary="Find the learning rate (and optimizer) to train a Keras model with.",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by _install_docs from packaged assets
        redoc_url=None,  # ReDoc exists only on a CDN; /docs covers the same document
        openapi_tags=[
            {"name": "jobs", "description": "Range-test jobs: submit, poll, results, charts, events."},
            {"name": "datasets", "description": "Upload .npz datasets to use as `dataset:<id>`."},
            {"name": "weights", "description": "Upload Keras 3 .weights.h5 files to start range tests from, as "
             "`weights:<id>`."},
            {"name": "operations", "description": "Health, readiness and metrics (no API key needed)."},
        ],
    )
    app.state.settings = settings
    app.state.tenants_by_key = settings.tenants_by_key()  # malformed LRRT_API_KEYS fails here, at start-up
    app.state.store = store
    app.state.fleet = Fleet(text_redis, Keys(settings.key_prefix))
    app.state.datasets = DatasetStore(text_redis, Keys(settings.key_prefix), settings.data_root)
    app.state.weights = WeightsStore(text_redis, Keys(settings.key_prefix), settings.data_root)
    app.state.live_backends = LiveBackends(app.state.fleet)
    app.state.celery = celery
    app.state.metrics = Metrics(store, app.state.fleet, settings.queue)

    install_problem_handlers(app)
    for router in (jobs.router, datasets.router, weights.router, ops.router, dashboard.router):
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, limit_for=_body_limit(settings))
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _install_docs(app)
    return app


def _install_docs(app: FastAPI) -> None:
    """`/docs`: FastAPI's Swagger UI page, with its script, CSS and icon from the installed package."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png",
        )


def _body_limit(settings: Settings) -> Callable[[Scope], tuple[int, str]]:
    """Per-request cap for BodyLimitMiddleware: uploads get their kind's cap, everything else the body cap."""

    def limit_for(scope: Scope) -> tuple[int, str]:
        if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/v1/datasets"):
            return settings.max_dataset_bytes + UPLOAD_OVERHEAD_BYTES, "upload a smaller .npz (subsample it)."
        if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/v1/weights"):
            return settings.max_weights_bytes + UPLOAD_OVERHEAD_BYTES, "upload a smaller .weights.h5."
        return settings.max_body_bytes, "send a smaller model JSON."

    return limit_for


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus what it cannot infer: the JobSpec request body (the submit route parses its
    body itself, see `service.submission`) and problem+json as the media type of every error response."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, description=app.description,
                         routes=app.routes, tags=app.openapi_tags)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    spec_schema = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(spec_schema.pop("$defs", {}))
    components["JobSpec"] = spec_schema
    for operations in schema["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    app.openapi_schema = schema
    return schema
