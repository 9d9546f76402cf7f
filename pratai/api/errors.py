"""The one place where errors become HTTP responses."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pratai.errors import PrataiError, RateLimited, Unauthorized


async def _pratai_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PrataiError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
    ]
    message = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
    return JSONResponse(
        {"error": "invalid_input", "message": message, "details": details}, status_code=422
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        {"error": "http_error", "message": str(exc.detail)},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(PrataiError, _pratai_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
