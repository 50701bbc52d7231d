"""Routes of the dashboard: the page, its static assets and the form description it is built from."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles

from lrrt.spec import FORBIDDEN_OPTIMIZER_PARAMS, OPTIMIZER_NAMES, JobSpec, Sweep

STATIC_DIR = Path(__file__).parent / "static"

#: Dataset URIs that need no upload (docs/api.md, "Datasets"); `dataset:` and `file:` are chosen in the form.
BUILTIN_DATASETS = ("builtin:digits", "keras:mnist", "keras:fashion_mnist", "keras:cifar10", "keras:cifar100")

#: The page loads only its own scripts and styles and talks only to this origin. uPlot sizes its
#: elements through the CSSOM, which `style-src 'self'` allows.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

#: Assets are revalidated on every load (ETag / Last-Modified answer 304), so an upgrade of the
#: service is never hidden behind a stale cached script.
_REVALIDATE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False, tags=["dashboard"])
_assets = StaticFiles(directory=STATIC_DIR)


@router.get("/", response_class=HTMLResponse)
def index() -> Response:
    return HTMLResponse(
        (STATIC_DIR / "index.html").read_text(encoding="utf-8"),
        headers={
            **_REVALIDATE,
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@router.get("/dashboard/form.json")
def form_description() -> JSONResponse:
    """What the submit form is built from: the job spec's JSON schema (fields, defaults, limits and
    descriptions) plus the choices the schema cannot express as enums, so the form never drifts
    from `lrrt.spec`."""
    return JSONResponse(_form_description(), headers=_REVALIDATE)


@router.get("/dashboard/{path:path}")
async def asset(path: str, request: Request) -> Response:
    response = await _assets.get_response(path, request.scope)
    response.headers.update({**_REVALIDATE, "X-Content-Type-Options": "nosniff"})
    return response


@lru_cache(maxsize=1)
def _form_description() -> dict[str, Any]:
    return {
        "schema": JobSpec.model_json_schema(),
        # Defaults that JSON schema cannot carry: a default_factory, and the length when neither
        # num_steps nor epochs is given.
        "default_optimizers": [
            arm.model_dump(exclude_none=True)
            for arm in JobSpec.model_fields["optimizers"].get_default(call_default_factory=True)
        ],
        "default_num_steps": Sweep().total_steps(train_samples=1),
        "optimizers": sorted(OPTIMIZER_NAMES),
        "forbidden_optimizer_params": sorted(FORBIDDEN_OPTIMIZER_PARAMS),
        "datasets": list(BUILTIN_DATASETS),
    }
