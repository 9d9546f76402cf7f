"""The warm synchronous call's own way through the app.

`POST /v1/functions/{name}/invoke` without a query string is answered here, ahead of the
router, instead of by the route: matching the path against every route and resolving the
route's dependencies took about as long as the rest of a warm call in this process. It runs
what the route runs (`principal` with its role check and rate limit, the body limit,
`answer_invoke`), answers errors as the exception handlers do, and names the route in the scope
for the request counter, inside the audit and metrics middleware like any route. A request with
a query string (`?async=true`) takes the route, which also keeps the call's OpenAPI entry.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from pratai.api.deps import allowed, services_of
from pratai.api.errors import error_response
from pratai.api.invocations import answer_invoke
from pratai.api.invocations import router as invocations_router
from pratai.errors import PrataiError

_INVOKE = re.compile(r"/v1/functions/([^/]+)/invoke")
_may_invoke = allowed("invoke")


def _invoke_route() -> BaseRoute:
    return next(
        route
        for route in invocations_router.routes
        if getattr(route, "path", None) == "/v1/functions/{name}/invoke"
        and "POST" in getattr(route, "methods", ())
    )


class InvokeShortcut:
    """Pure ASGI; add it before the audit and metrics middleware (so that it runs inside
    them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = _invoke_route()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and not scope["query_string"]
            and not scope.get("root_path")
            and (matched := _INVOKE.fullmatch(scope["path"])) is not None
        ):
            scope["route"] = self.route  # the template the request counter reports
            request = Request(scope, receive)
            try:
                who = await _may_invoke(request)
                response = await answer_invoke(
                    request, matched.group(1), who, services_of(request), run_async=False
                )
            except PrataiError as exc:
                response = error_response(exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
