"""The project's API keys (a new key's token is shown once, in the answer that made it) and its
users with their roles (as /v1/keys and /v1/users)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from pratai.api.deps import Services
from pratai.console.web import Svc, Viewer, render, role, sessions
from pratai.core.models import ApiKey, Role, now
from pratai.core.sessions import SESSION_KEY_NAME
from pratai.core.tenants import RANK, Principal, parse_duration
from pratai.errors import InvalidInput

router = APIRouter()
Invoker = Annotated[Principal, role("invoke")]
Admin = Annotated[Principal, role("administer")]
EXPIRIES = ("1h", "1d", "7d", "30d", "90d", "365d")
# The token is in this answer only: no cache may keep it.
NO_STORE = {"Cache-Control": "no-store"}


def _role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {text!r}: use one of {names}") from None


def _grantable(who: Principal) -> list[str]:
    """The roles `who` may give a key: none above their own."""
    return [r.value for r in sorted(Role, key=RANK.__getitem__) if RANK[r] <= RANK[who.role]]


# --- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    state: str  # active, expired or revoked


async def _keys(who: Principal, svc: Services, **extra: Any) -> dict[str, Any]:
    keys = await svc.tenants.keys(who, None)
    at = now()

    def state(expires_at: float | None, revoked_at: float | None) -> str:
        if revoked_at is not None:
            return "revoked"
        return "expired" if expires_at is not None and expires_at <= at else "active"

    rows = [KeyRow(k, state(k.expires_at, k.revoked_at)) for k in reversed(keys)]
    members = {m.id: m.name for m in await svc.tenants.members(who)}
    return {
        "api_keys": [r for r in rows if r.key.name != SESSION_KEY_NAME],
        "sessions": [r for r in rows if r.key.name == SESSION_KEY_NAME],
        "users": members,
        "roles": _grantable(who),
        "expiries": EXPIRIES,
        "new": None,
        "token": "",
        "done": "",
        **extra,
    }


@router.get("/keys")
async def keys_page(request: Request, who: Viewer, svc: Svc) -> Response:
    return render(request, "admin/keys.html", **await _keys(who, svc))


@router.post("/keys")
async def create_key(
    request: Request,
    who: Invoker,
    svc: Svc,
    role: Annotated[str, Form()] = "",
    expires: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    expires_in = parse_duration(expires.strip()) if expires.strip() else None
    key, token = await svc.tenants.issue_key(who, None, _role(role), expires_in, name.strip())
    context = await _keys(who, svc, new=key, token=token)
    answer = render(request, "admin/_keys.html", **context)
    answer.headers.update(NO_STORE)
    return answer


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, request: Request, who: Admin, svc: Svc) -> Response:
    if key_id == who.key_id:
        raise InvalidInput("that is this session's key: sign out to end it")
    await svc.tenants.revoke(who, key_id)
    return render(request, "admin/_keys.html", **await _keys(who, svc, done=f"revoked {key_id}"))


# --- users -----------------------------------------------------------------------------------


async def _users(who: Principal, svc: Services, **extra: Any) -> dict[str, Any]:
    return {
        "members": await svc.tenants.members(who),
        "roles": _grantable(who),
        "new": None,
        "token": "",
        "done": "",
        **extra,
    }


@router.get("/users")
async def users_page(request: Request, who: Viewer, svc: Svc) -> Response:
    return render(request, "admin/users.html", **await _users(who, svc))


@router.post("/users")
async def create_user(
    request: Request,
    who: Admin,
    svc: Svc,
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
) -> Response:
    """The user and their first key, whose token this answer shows once."""
    user, token = await svc.tenants.create_user(who, name.strip(), who.project.name, _role(role))
    answer = render(request, "admin/_users.html", **await _users(who, svc, new=user, token=token))
    answer.headers.update(NO_STORE)
    return answer


@router.post("/users/password")
async def set_password(
    request: Request,
    who: Admin,
    svc: Svc,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    await sessions(request).set_password(who, name.strip(), password)
    done = f"password set for {name.strip()}: they sign in with it at /ui/signin"
    return render(request, "admin/_users.html", **await _users(who, svc, done=done))
