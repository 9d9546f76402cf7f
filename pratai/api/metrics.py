"""`GET /metrics` (Prometheus text) and the count of HTTP requests by route template.

Access: with PRATAI_METRICS_TOKEN set, a bearer of that token; without it, clients on loopback
only (a scraper on another machine needs the token).
"""

from __future__ import annotations

from fastapi import Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pratai.errors import Forbidden, Unauthorized
from pratai.metrics import CONTENT_TYPE, Metrics
from pratai.metrics_port import refusal

# A client may send any method name: the rest count as "other", keeping the labels bounded.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestCounter:
    """Counts each HTTP request by method, route template (never the raw path) and status
    class; a path no route matches counts as "unmatched"."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def keep_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, keep_status)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.http_requests(method, _template(scope), f"{status // 100}xx").inc()


def _template(scope: Scope) -> str:
    """The template of the route that answered (the router notes it in the scope)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    # A mounted app's route (the console's) is relative to where it is mounted.
    return scope.get("root_path", "") + path if isinstance(path, str) else "unmatched"


def check_access(request: Request, token: str) -> None:
    authorization = request.headers.get("authorization", "")
    refused = refusal(token, authorization, request.client.host if request.client else "")
    if refused is not None:
        status, message = refused
        raise (Unauthorized if status == 401 else Forbidden)(message)


async def metrics_response(metrics: Metrics) -> Response:
    await metrics.refresh()
    return Response(metrics.render(), media_type=CONTENT_TYPE)
