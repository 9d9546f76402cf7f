"""The web console at `/ui`: server-rendered pages (Jinja2, htmx, vendored charts) over the same
core services as `/v1`, behind a cookie session with CSRF and a strict CSP."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from pratai.api.deps import Services
from pratai.console import invocations, logs, overview, signin
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
    app.include_router(signin.router)
    app.include_router(overview.router)
    app.include_router(invocations.router)
    app.include_router(logs.router)
    return app
