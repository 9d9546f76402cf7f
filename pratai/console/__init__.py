"""The web console at `/ui`: server-rendered pages (Jinja2, htmx, vendored charts) over the same
core services as `/v1`, behind a cookie session with CSRF and a strict CSP."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from pratai.api.deps import Services
from pratai.console import (
    admin,
    admin_keys,
    charts,
    events,
    functions,
    functions_list,
    invocations,
    jobs,
    logs,
    overview,
    platform,
    signin,
)
from pratai.console.web import HERE, SecurityHeaders, SignInNeeded, error_page, guard
from pratai.errors import PrataiError

__all__ = ["create_console"]


def create_console(svc: Services) -> FastAPI:
    """The console as an app of its own, mounted at /ui by the api (so /v1 stays bearer-only
    and the console's errors are pages, not JSON)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, dependencies=[Depends(guard)])
    app.state.services = svc
    app.add_exception_handler(SignInNeeded, error_page)
    app.add_exception_handler(PrataiError, error_page)
    app.add_exception_handler(HTTPException, error_page)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for area in (
        signin,
        overview,
        functions_list,
        charts,
        invocations,
        logs,
        functions,
        events,
        jobs,
        platform,
        admin,
        admin_keys,
    ):
        app.include_router(area.router)
    return app
