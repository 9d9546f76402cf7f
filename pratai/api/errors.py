"""The one place where errors become HTTP responses, and where the OpenAPI document learns
which errors an operation answers and in what shape."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from pratai.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PrataiError,
    RateLimited,
    Unauthorized,
    Unavailable,
)


class ErrorBody(BaseModel):
    """What every error answer carries."""

    error: str = Field(description="a stable code, e.g. invalid_input, not_found, conflict")
    message: str = Field(description="what went wrong, for a person")
    details: dict[str, Any] | list[dict[str, Any]] | None = Field(
        None, description="the values involved; for invalid_input, one {field, problem} each"
    )


_MEANING: dict[type[PrataiError], str] = {
    InvalidInput: "The request is malformed or breaks a rule",
    Unauthorized: "Missing, unknown, revoked or expired API key",
    Forbidden: "The key's role does not allow this",
    NotFound: "No such object in this project",
    Conflict: "The name exists, or the object is in the wrong state",
    PayloadTooLarge: "The body is over its size limit",
    RateLimited: "Over a route's or key's rate limit (see Retry-After)",
    Unavailable: "The platform cannot take the work right now",
}

# What every operation behind an API key may answer, whatever it does.
AUTHENTICATED: tuple[type[PrataiError], ...] = (Unauthorized, Forbidden, RateLimited, Unavailable)


def responses(*kinds: type[PrataiError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for these kinds of error, each with the error body's schema."""
    return {kind.status: {"model": ErrorBody, "description": _MEANING[kind]} for kind in kinds}


async def _pratai_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PrataiError)
    return error_response(exc)


def error_response(exc: PrataiError) -> JSONResponse:
    """The answer to a PrataiError, wherever it is raised."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Input the schema refuses is `invalid_input`, with the same status as input the code
    refuses: one kind of error, one status."""
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
    ]
    message = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
    error = InvalidInput(message)
    return JSONResponse(
        {"error": error.code, "message": message, "details": details}, status_code=error.status
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Starlette's own `Allow` names only the
    methods of the first route whose path matched, and each method is a route of its own; so
    each method is tried against the whole routing table."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return JSONResponse(
        {"error": "http_error", "message": str(exc.detail)},
        status_code=exc.status_code,
        headers=headers or None,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(PrataiError, _pratai_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
