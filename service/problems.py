"""Problem details (RFC 9457) for every error the API answers, and the handlers that guarantee it.

Clients get one error shape whatever failed: our own checks (`ProblemError`), FastAPI's request
validation, Starlette's 404/405/413, the core's and the engine's errors raised at submission (all
`lrrt.problems.ProblemException`), Redis being down, or a bug (500, without a stack trace). Every 4xx
`detail` says what to change.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lrrt import problems as core
from lrrt.problems import PROBLEM_BASE

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    """One invalid input: where it is (`in` + JSON `pointer` into that part) and what to change."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    in_: str = Field(alias="in", description="body | query | path | header")
    pointer: str = Field(description="JSON pointer into that part, e.g. /sweep/num_steps")
    message: str
    type: str = Field(description="Machine-readable error kind, e.g. 'greater_than_equal' or 'cap_exceeded'.")


class Problem(BaseModel):
    """The body of every error answer (RFC 9457 problem details), named `Problem` in the OpenAPI document.
    Extension members appear only where they apply."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[PROBLEM_BASE + "validation-error"], description="URN naming the kind of problem.")
    title: str = Field(description="Short summary of the kind of problem (the same for every occurrence).")
    status: int
    detail: str = Field(description="What went wrong this time, and what to change.")
    instance: str | None = Field(None, description="The request path this problem occurred on.")
    errors: list[FieldError] | None = Field(None, description="Field-level errors (422 validation, caps).")
    disallowed: list[str] | None = Field(None, description="Model classes/modules outside the allow-list.")


class ProblemError(core.ProblemException):
    """Raise from routes and dependencies to answer with a problem; `headers` ride along (Retry-After...).

    The API's own errors take their slug, status and title per call; the engine's and the core's errors
    are `ProblemException` subclasses with them fixed, and both answer through `problem_response`.
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail, **extensions)
        self.status = status
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}


def problem_response(request: Request, problem: core.ProblemException) -> JSONResponse:
    """The problem+json answer; `instance` is the request path."""
    return JSONResponse(problem.problem(instance=request.url.path), status_code=problem.status,
                        headers=problem.headers, media_type=PROBLEM_MEDIA_TYPE)


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI error dicts -> our `errors` members: where (`in`, `pointer`) and a readable message."""
    out = []
    for err in errors:
        loc = list(err.get("loc") or ())
        where = str(loc.pop(0)) if loc and loc[0] in ("body", "query", "path", "header", "cookie") else "body"
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        out.append(
            {
                "in": where,
                "pointer": "/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in loc),
                "message": message,
                "type": err.get("type", "value_error"),
            }
        )
    return out


def validation_problem(request: Request, errors: list[dict[str, Any]]) -> JSONResponse:
    members = field_errors(errors)
    first = members[0] if members else {"in": "body", "pointer": "/", "message": "invalid request"}
    more = f" (and {len(members) - 1} more, listed in `errors`)" if len(members) > 1 else ""
    detail = f"{first['in']} {first['pointer']}: {first['message']}{more}. Fix it and resend."
    return problem_response(
        request, ProblemError(422, "validation-error", detail, title="The request is invalid", errors=members)
    )


#: Starlette's own errors (routing, body cap): (slug, detail template) so they read like ours.
_HTTP_PROBLEMS = {
    404: ("not-found", "No such route: {method} {path}. See /docs for the routes this API serves."),
    405: ("method-not-allowed", "{method} is not allowed on {path}. See the Allow header or /docs for the methods it takes."),
    413: ("content-too-large", "{detail}"),
}


def allowed_methods(request: Request) -> list[str]:
    """Every documented method at this path, from the OpenAPI document (Starlette's 405 names only the
    first matching route's methods; RFC 9110 wants them all, e.g. GET and POST on /v1/jobs)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\{[^/}]+\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error class to a problem+json answer."""

    @app.exception_handler(core.ProblemException)
    async def _problem(request: Request, exc: core.ProblemException) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(request, list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug, template = _HTTP_PROBLEMS.get(exc.status_code, ("http-error", "{detail}"))
        detail = template.format(method=request.method, path=request.url.path, detail=exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (documented := allowed_methods(request)):
            headers["Allow"] = ", ".join(documented)
        return problem_response(request, ProblemError(exc.status_code, slug, detail, headers=headers))

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unavailable: %s", exc)
        return problem_response(request, ProblemError(
            503, "store-unavailable",
            "The job store (Redis) is not reachable right now. Retry shortly; if it persists, the operator "
            "should check LRRT_REDIS_URL and the Redis server.",
            headers={"Retry-After": "5"},
        ))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, ProblemError(
            500, "internal-error",
            "The server failed unexpectedly; nothing about your request was wrong as far as it can tell. "
            "Retry; if it persists, report the time and path to the operator.",
        ))


def problem_responses(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, each documented as a Problem.

    FastAPI lists them as application/json; `service.app` relabels them application/problem+json.
    """
    return {status: {"model": Problem, "description": text} for status, text in described.items()}
