"""The request-body cap, answered as a 413 problem before a byte too many is read.

A pure ASGI middleware rather than FastAPI's `max_body_size`: the cap comes from `Settings` at
`create_app` time, uploads get the (much larger) dataset cap, and the answer must be problem+json.
It refuses a declared `Content-Length` over the cap without calling the app at all, and counts the
bytes of bodies that do not declare one (chunked), raising a 413 `HTTPException` from `receive` that
the app's problem handler turns into the answer.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import ProblemError, problem_response

TOO_LARGE = "The request body is over this server's limit of {limit:,} bytes; {advice}"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], tuple[int, str]]) -> None:
        """`limit_for(scope)` -> (byte limit, advice telling the user what to send instead)."""
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, advice = self.limit_for(scope)
        detail = TOO_LARGE.format(limit=limit, advice=advice)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            request = Request(scope)
            await problem_response(request, ProblemError(413, "content-too-large", detail))(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, counting_receive, send)
