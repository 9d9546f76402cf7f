"""The ASGI application."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from starlette.types import ASGIApp

import pratai
from pratai.api import (
    connectors,
    errors,
    events,
    functions,
    gateway,
    images,
    invocations,
    jobs,
    nodes,
    openapi,
    secrets,
    tenancy,
)
from pratai.api.audit import AuditMiddleware
from pratai.api.deps import Services, allowed
from pratai.api.metrics import RequestCounter, check_access, metrics_response
from pratai.api.shortcut import InvokeShortcut
from pratai.console import create_console
from pratai.core.tenants import Principal


def create_app(
    svc: Services,
    lifespan: Callable[[ASGIApp], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Pratai",
        version=pratai.__version__,
        description="Self-hostable event-driven compute. Authenticate with "
        "`Authorization: Bearer <api key>`.",
        lifespan=lifespan,
    )
    app.state.services = svc
    errors.install(app)
    openapi.install(app, svc.jobs.runtimes)
    app.include_router(functions.router)
    app.include_router(invocations.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(connectors.router)
    app.include_router(tenancy.router)
    app.include_router(secrets.router)
    app.include_router(gateway.router)
    app.include_router(images.router)
    app.include_router(nodes.router)
    app.include_router(nodes.nodes_router)
    # Added first, so that it runs inside the audit and metrics middleware.
    app.add_middleware(InvokeShortcut)
    app.add_middleware(AuditMiddleware, record=svc.tenants.audit)
    app.mount("/ui", create_console(svc))

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/v1/node", tags=["platform"], responses=errors.responses(*errors.AUTHENTICATED))
    async def node(who: Annotated[Principal, Depends(allowed("operate"))]) -> dict[str, Any]:
        """Warm pools on this process's node and the sandbox features in use."""
        return svc.node_stats() if svc.node_stats else {"pools": [], "driver": None}

    if svc.metrics is not None:
        metrics = svc.metrics
        app.add_middleware(RequestCounter, metrics=metrics)

        @app.get("/metrics", include_in_schema=False)
        async def prometheus(request: Request) -> Response:
            """Prometheus text; not part of the JSON API, so not in the OpenAPI document."""
            check_access(request, svc.settings.metrics_token)
            return await metrics_response(metrics)

    @app.get("/healthz", tags=["platform"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": pratai.__version__}

    return app
