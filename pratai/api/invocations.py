"""Invoking functions and reading what happened."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from pratai.api.deps import Services, allowed, read_body, services
from pratai.api.errors import AUTHENTICATED, responses
from pratai.api.schemas import Accepted, InvocationOut, LogLineOut, LogsOut
from pratai.core.tenants import Principal
from pratai.errors import Conflict, NotFound, PayloadTooLarge

router = APIRouter(prefix="/v1", tags=["invocations"], responses=responses(*AUTHENTICATED))

Reader = Annotated[Principal, Depends(allowed("read"))]
Invoker = Annotated[Principal, Depends(allowed("invoke"))]
Svc = Annotated[Services, Depends(services)]


@router.post(
    "/functions/{name}/invoke",
    response_model=InvocationOut,
    responses={
        202: {"model": Accepted, "description": "queued (async=true)"},
        **responses(NotFound, Conflict, PayloadTooLarge),
    },
    openapi_extra={
        "requestBody": {
            "description": "the payload: JSON is decoded for the function, anything else "
            "arrives as bytes",
            "content": {"application/json": {"schema": {}}, "*/*": {"schema": {}}},
        }
    },
)
async def invoke(
    name: str,
    request: Request,
    who: Invoker,
    svc: Svc,
    run_async: Annotated[bool, Query(alias="async")] = False,
) -> Any:
    """Run the function. By default waits for the outcome; `?async=true` answers 202 with the
    invocation id once the invocation is durably queued. A repeated `Idempotency-Key` header
    gets the first request's invocation instead of a new run."""
    return await answer_invoke(request, name, who, svc, run_async=run_async)


async def answer_invoke(
    request: Request, name: str, who: Principal, svc: Services, *, run_async: bool
) -> JSONResponse:
    """What `invoke` answers, for the route and for InvokeShortcut (pratai/api/shortcut.py)."""
    payload = await read_body(request, svc.settings.max_payload_bytes)
    content_type = request.headers.get("content-type", "application/json")
    key = request.headers.get("idempotency-key")
    if run_async:
        queued = await svc.invocations.submit(who.project, name, payload, content_type, key)
        return JSONResponse({"id": queued.id, "status": str(queued.status)}, status_code=202)
    done = await svc.invocations.invoke(who.project, name, payload, content_type, key)
    return JSONResponse(InvocationOut.of(done))


@router.get(
    "/invocations/{invocation_id}", response_model=InvocationOut, responses=responses(NotFound)
)
async def show_invocation(invocation_id: str, who: Reader, svc: Svc) -> Any:
    return InvocationOut.of(await svc.invocations.get(who.project, invocation_id))


@router.get("/invocations/{invocation_id}/tree", responses=responses(NotFound))
async def invocation_tree(invocation_id: str, who: Reader, svc: Svc) -> list[dict[str, Any]]:
    """The pipeline run this invocation belongs to, root first, each with its depth."""
    return [
        {"depth": depth, **InvocationOut.of(inv)}
        for depth, inv in await svc.invocations.tree(who.project, invocation_id)
    ]


@router.get("/invocations", response_model=list[InvocationOut], responses=responses(NotFound))
async def list_invocations(
    who: Reader,
    svc: Svc,
    function: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Any:
    target = await svc.functions.get(who.project, function) if function else None
    found = await svc.invocations.recent(who.project, target, limit)
    return [InvocationOut.of(inv) for inv in found]


@router.get("/functions/{name}/logs", response_model=LogsOut, responses=responses(NotFound))
async def function_logs(
    name: str,
    who: Reader,
    svc: Svc,
    after: float | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> LogsOut:
    """Output of finished invocations, oldest first. Pass `cursor` back as `after` to follow."""
    function = await svc.functions.get(who.project, name)
    lines, cursor = await svc.invocations.logs(who.project, function, after, limit)
    return LogsOut(
        lines=[
            LogLineOut(invocation_id=ln.invocation_id, time=ln.time, stream=ln.stream, text=ln.text)
            for ln in lines
        ],
        cursor=cursor,
    )
