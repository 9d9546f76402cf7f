"""The function page's Test panel: a JSON payload (or one of the function's saved payloads,
shared by the project) -> a synchronous run, as `POST /v1/functions/{name}/invoke` does, and
its result or error, logs, duration, peak memory and cold start, together."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from pratai.console.web import Svc, render, role
from pratai.core.invocations import decode_result
from pratai.core.models import Invocation
from pratai.core.saved_payloads import check_json
from pratai.core.tenants import Principal
from pratai.errors import InvalidInput

router = APIRouter()
Invoker = Annotated[Principal, role("invoke")]


def duration(ms: float | None) -> str:
    """A handler's run often takes well under a millisecond: keep the digits that tell."""
    if ms is None:
        return "unknown"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.3f} ms"


def outcome(invocation: Invocation) -> dict[str, Any]:
    """What the result fragment shows of a finished invocation."""
    result = decode_result(invocation)
    memory = invocation.peak_memory_kb
    return {
        "inv": invocation,
        "result": json.dumps(result, indent=2, ensure_ascii=False) if result is not None else "",
        "error": invocation.error or None,
        "memory": f"{memory / 1024:.1f} MB" if memory is not None else "unknown",
        "duration": duration(invocation.duration_ms),
    }


@router.post("/functions/{name}/invoke")
async def invoke(
    request: Request,
    name: str,
    who: Invoker,
    svc: Svc,
    payload: Annotated[str, Form()] = "",
) -> Response:
    text = payload.strip()
    try:
        body = check_json(text).encode() if text else b""
    except InvalidInput as exc:  # shown in the panel, next to the payload, not as a flash
        return render(request, "functions/_result.html", status=400, problem=exc.message)
    limit = svc.settings.max_payload_bytes
    if len(body) > limit:
        problem = f"the payload is {len(body)} bytes; the limit is {limit} bytes"
        return render(request, "functions/_result.html", status=413, problem=problem)
    done = await svc.invocations.invoke(who.project, name, body, "application/json")
    return render(request, "functions/_result.html", problem=None, **outcome(done))


async def _saved(request: Request, svc: Svc, who: Principal, name: str, chosen: str) -> Response:
    payloads = await svc.saved_payloads.all(who.project, name)
    return render(
        request, "functions/_saved.html", f={"name": name}, payloads=payloads, chosen=chosen
    )


@router.post("/functions/{name}/payloads")
async def save_payload(
    request: Request,
    name: str,
    who: Invoker,
    svc: Svc,
    save_as: Annotated[str, Form()] = "",
    payload: Annotated[str, Form()] = "",
) -> Response:
    if not save_as.strip():
        raise InvalidInput("name the payload to save it")
    saved = await svc.saved_payloads.save(who.project, name, save_as.strip(), payload.strip())
    return await _saved(request, svc, who, name, chosen=saved.name)


@router.delete("/functions/{name}/payloads")
async def delete_payload(
    request: Request, name: str, who: Invoker, svc: Svc, saved: str = ""
) -> Response:
    if not saved:
        raise InvalidInput("choose a saved payload to delete")
    await svc.saved_payloads.delete(who.project, name, saved)
    return await _saved(request, svc, who, name, chosen="")
