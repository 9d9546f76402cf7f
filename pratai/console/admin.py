"""The project's secrets (names and dates only: a value goes in and never comes out) and its
audit log with filters (as /v1/secrets and /v1/audit)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from pratai.api.deps import Services
from pratai.console.web import Svc, Viewer, render, role
from pratai.core.tenants import Principal, parse_duration
from pratai.errors import InvalidInput

router = APIRouter()
Deployer = Annotated[Principal, role("deploy")]
AUDIT_SHOWN = 200
ACTIONS = ("POST", "PUT", "PATCH", "DELETE")
WINDOWS = [("", "any time"), ("15m", "last 15 minutes"), ("1h", "last hour"), ("1d", "last day")]
WINDOWS += [("7d", "last 7 days"), ("30d", "last 30 days")]


# --- secrets ---------------------------------------------------------------------------------


async def _secrets(who: Principal, svc: Services, done: str = "") -> dict[str, Any]:
    return {"secrets": await svc.secrets.names(who.project), "done": done}


@router.get("/secrets")
async def secrets_page(request: Request, who: Viewer, svc: Svc) -> Response:
    return render(request, "admin/secrets.html", **await _secrets(who, svc))


@router.post("/secrets")
async def create_secret(
    request: Request,
    who: Deployer,
    svc: Svc,
    name: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
) -> Response:
    """The answer re-renders the list and an empty form: the value is never sent back."""
    if not value:
        raise InvalidInput("a secret needs a value")
    await svc.secrets.create(who.project, name.strip(), value)
    context = await _secrets(who, svc, f"secret {name.strip()} stored")
    return render(request, "admin/_secrets.html", **context)


@router.delete("/secrets/{name}")
async def delete_secret(name: str, request: Request, who: Deployer, svc: Svc) -> Response:
    await svc.secrets.delete(who.project, name)
    return render(request, "admin/_secrets.html", **await _secrets(who, svc, f"deleted {name}"))


# --- audit log -------------------------------------------------------------------------------


def _before(text: str) -> float | None:
    """A `datetime-local` value, read as UTC."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        raise InvalidInput(f"invalid time {text!r}: use YYYY-MM-DDTHH:MM (UTC)") from None


@router.get("/audit")
async def audit_page(
    request: Request,
    who: Viewer,
    svc: Svc,
    action: str = "",
    key: str = "",
    within: str = "",
    before: str = "",
) -> Response:
    if action and action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    since = time.time() - parse_duration(within) if within else None
    entries = await svc.tenants.audit_log(
        who.project,
        AUDIT_SHOWN,
        action=action or None,
        key_id=key.strip() or None,
        since=since,
        until=_before(before),
    )
    keys = {k.id: k for k in await svc.tenants.keys(who, None)}
    return render(
        request,
        "admin/audit.html",
        entries=entries,
        keys=keys,
        shown=AUDIT_SHOWN,
        actions=ACTIONS,
        windows=WINDOWS,
        action=action,
        key=key.strip(),
        within=within,
        before=before,
    )
