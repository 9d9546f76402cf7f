"""/fn/<project>/...: functions as HTTP APIs, with their OpenAPI document and docs page."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from pratai.api.deps import Services, read_body, services
from pratai.api.events import as_response
from pratai.api.schemas import InvocationOut
from pratai.core.models import Project, Route, Status
from pratai.core.tenants import Principal
from pratai.errors import NotFound, Unauthorized

router = APIRouter(prefix="/fn", tags=["gateway"], include_in_schema=False)
Svc = Annotated[Services, Depends(services)]


async def _project(svc: Services, name: str) -> Project:
    project = await svc.tenants.project_named(name)
    if project is None or not await svc.gateway.routes(project.id):
        raise NotFound(f"no routes at /fn/{name}")
    return project


async def _caller(svc: Services, request: Request) -> Principal | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    who = await svc.auth.authenticate(token.strip())
    request.state.principal = who
    await svc.tenants.limit(who)
    return who


def _cors(route: Route, request: Request, response: Response) -> Response:
    origin = request.headers.get("origin")
    if origin and (origin in route.cors_origins or "*" in route.cors_origins):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


@router.get("/{project}/openapi.json")
async def project_openapi(project: str, svc: Svc) -> dict[str, Any]:
    """OpenAPI 3.1 of the project's function routes."""
    return await svc.gateway.openapi(await _project(svc, project))


@router.get("/{project}/docs")
async def project_docs(project: str, svc: Svc) -> HTMLResponse:
    await _project(svc, project)
    return get_swagger_ui_html(openapi_url=f"/fn/{project}/openapi.json", title=f"{project} API")


@router.api_route(
    "/{project}/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
)
async def call_route(project: str, path: str, request: Request, svc: Svc) -> Response:
    owner = await _project(svc, project)
    method = request.method
    if method == "OPTIONS":  # CORS preflight
        wanted = request.headers.get("access-control-request-method", "GET")
        route, _ = await svc.gateway.match(owner, wanted, "/" + path)
        answer = Response(status_code=204)
        answer.headers["Access-Control-Allow-Methods"] = route.method
        answer.headers["Access-Control-Allow-Headers"] = "authorization, content-type"
        return _cors(route, request, answer)
    route, params = await svc.gateway.match(owner, method, "/" + path)
    try:
        who = await _caller(svc, request)
    except Unauthorized:
        if route.auth != "public":
            raise
        who = None
    svc.gateway.authorize(route, who, owner)
    caller = who.key_id if who else (request.client.host if request.client else "unknown")
    await svc.gateway.limit(route, caller)
    limit = min(
        route.max_body_bytes or svc.settings.max_payload_bytes, svc.settings.max_payload_bytes
    )
    body = await read_body(request, limit)
    try:
        decoded: Any = json.loads(body) if body else None
    except ValueError:
        decoded = body.decode(errors="replace")
    function = await svc.functions.by_id(route.function_id)
    if function is None or function.active_version is None:
        raise NotFound("this route's function is not ready")
    schema = await svc.gateway.input_schema(function)
    if schema is not None:
        svc.gateway.validate(schema, decoded)
    payload = json.dumps(
        {
            "method": method,
            "path": "/" + path,
            "params": params,
            "query": dict(request.query_params),
            "headers": {k: v for k, v in request.headers.items() if k != "authorization"},
            "body": decoded,
        }
    ).encode()
    run = svc.invocations.invoke(  # the project and function are known: no second lookup
        owner, function.name, payload, "application/json", request.headers.get("idempotency-key")
    )
    try:
        async with asyncio.timeout(route.timeout_s or function.timeout_s + 5):
            done = await run
    except TimeoutError:
        return JSONResponse(
            {"error": "timeout", "message": "the route's time limit passed"}, status_code=504
        )
    if done.status != Status.SUCCEEDED:
        return _cors(route, request, JSONResponse(InvocationOut.of(done), status_code=502))
    return _cors(route, request, as_response(InvocationOut.of(done)["result"]))
