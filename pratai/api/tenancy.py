"""/v1/projects, /v1/users, /v1/keys, /v1/audit, /v1/whoami."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, Strict

from pratai.api import rules
from pratai.api.deps import Services, allowed, principal, services
from pratai.api.errors import AUTHENTICATED, responses
from pratai.api.schemas import Input
from pratai.core.gateway import parse_rate
from pratai.core.models import ApiKey, Role
from pratai.core.sessions import MIN_PASSWORD, Sessions
from pratai.core.tenants import Principal, parse_duration
from pratai.errors import Conflict, NotFound

router = APIRouter(prefix="/v1", tags=["tenancy"], responses=responses(*AUTHENTICATED))

Anyone = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(allowed("administer"))]
Reader = Annotated[Principal, Depends(allowed("read"))]
Svc = Annotated[Services, Depends(services)]


class ProjectIn(Input):
    name: str = Field(json_schema_extra=rules.NAME)


class ProjectOut(BaseModel):
    id: str
    name: str
    created_at: float


class UserIn(Input):
    name: str = Field(json_schema_extra=rules.NAME)
    project: str
    role: Annotated[Role, Strict(False)] = Role.DEVELOPER  # the enum from its JSON string


class KeyIn(Input):
    project: str | None = None
    role: Annotated[Role, Strict(False)]
    expires: str | None = Field(
        None, description="e.g. 30d, 12h, 15m, 90s", json_schema_extra=rules.DURATION
    )
    name: str = ""
    rate_limit: str | None = Field(
        None, description="e.g. 100/minute, over every endpoint", json_schema_extra=rules.RATE
    )


class KeyOut(BaseModel):
    id: str
    project: str
    role: str
    name: str
    user_id: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    rate_limit: str | None = None

    @classmethod
    def of(cls, key: ApiKey, project: str) -> KeyOut:
        return cls(
            id=key.id,
            project=project,
            role=key.role,
            name=key.name,
            user_id=key.user_id,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            rate_limit=f"{key.rate_limit} per {key.rate_window_s:g} s"
            if key.rate_limit and key.rate_window_s
            else None,
        )


class NewKey(KeyOut):
    token: str  # shown once; only its hash is stored


class NewUser(BaseModel):
    id: str
    name: str
    project: str
    role: str
    token: str  # the user's first key, shown once


class Whoami(BaseModel):
    key_id: str
    project: str
    role: str
    user_id: str | None
    platform_admin: bool


class AuditOut(BaseModel):
    key_id: str
    user_id: str | None
    action: str
    target: str
    status: int
    at: float


@router.get("/whoami", response_model=Whoami)
async def whoami(who: Anyone) -> Whoami:
    return Whoami(
        key_id=who.key_id,
        project=who.project.name,
        role=who.role,
        user_id=who.user_id,
        platform_admin=who.platform_admin,
    )


@router.post("/projects", status_code=201, response_model=ProjectOut, responses=responses(Conflict))
async def create_project(body: ProjectIn, who: Admin, svc: Svc) -> ProjectOut:
    """Admins of the `default` project create projects."""
    project = await svc.tenants.create_project(who, body.name)
    return ProjectOut(id=project.id, name=project.name, created_at=project.created_at)


@router.get("/projects", response_model=list[ProjectOut])
async def list_projects(who: Reader, svc: Svc) -> list[ProjectOut]:
    return [
        ProjectOut(id=p.id, name=p.name, created_at=p.created_at)
        for p in await svc.tenants.projects(who)
    ]


@router.post(
    "/users", status_code=201, response_model=NewUser, responses=responses(NotFound, Conflict)
)
async def create_user(body: UserIn, who: Admin, svc: Svc) -> NewUser:
    """Admins create users; the answer holds the user's first key, shown this once."""
    user, token = await svc.tenants.create_user(who, body.name, body.project, body.role)
    return NewUser(id=user.id, name=user.name, project=body.project, role=body.role, token=token)


class PasswordIn(Input):
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024)


@router.put("/users/{name}/password", status_code=204, responses=responses(NotFound))
async def set_password(name: str, body: PasswordIn, who: Anyone, svc: Svc) -> None:
    """The password a user signs in to the web console with (`/ui`). Users set their own;
    admins set those of users with a key in their project. Stored as a scrypt hash."""
    await Sessions(svc.tenants).set_password(who, name, body.password)


@router.post("/keys", status_code=201, response_model=NewKey, responses=responses(NotFound))
async def create_key(body: KeyIn, who: Anyone, svc: Svc) -> NewKey:
    """A key with a role no higher than the caller's; the token is shown this once."""
    expires = parse_duration(body.expires) if body.expires else None
    rate = parse_rate(body.rate_limit) if body.rate_limit else None
    key, token = await svc.tenants.issue_key(who, body.project, body.role, expires, body.name, rate)
    project = body.project or who.project.name
    return NewKey(**KeyOut.of(key, project).model_dump(), token=token)


@router.get("/keys", response_model=list[KeyOut], responses=responses(NotFound))
async def list_keys(who: Reader, svc: Svc, project: str | None = None) -> list[KeyOut]:
    name = project or who.project.name
    return [KeyOut.of(k, name) for k in await svc.tenants.keys(who, project)]


# 409: the last admin key of the default project is not revoked (nobody could administer).
@router.delete("/keys/{key_id}", status_code=204, responses=responses(NotFound, Conflict))
async def revoke_key(key_id: str, who: Anyone, svc: Svc) -> None:
    await svc.tenants.revoke(who, key_id)


@router.get("/audit", response_model=list[AuditOut])
async def list_audit(
    who: Reader, svc: Svc, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AuditOut]:
    """Who created, changed, deleted or invoked what in this project, newest first."""
    entries = await svc.tenants.audit_log(who.project, limit)
    return [
        AuditOut(
            key_id=e.key_id,
            user_id=e.user_id,
            action=e.action,
            target=e.target,
            status=e.status,
            at=e.at,
        )
        for e in entries
    ]
