"""/v1/secrets: values go in, and never come out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from pratai.api import rules
from pratai.api.deps import Services, allowed, services
from pratai.api.errors import AUTHENTICATED, responses
from pratai.api.schemas import Input
from pratai.core.secrets import MAX_SECRET_BYTES
from pratai.core.tenants import Principal
from pratai.errors import Conflict, NotFound, PayloadTooLarge

router = APIRouter(prefix="/v1/secrets", tags=["secrets"], responses=responses(*AUTHENTICATED))

Reader = Annotated[Principal, Depends(allowed("read"))]
Deployer = Annotated[Principal, Depends(allowed("deploy"))]
Svc = Annotated[Services, Depends(services)]


class SecretIn(Input):
    name: str = Field(json_schema_extra=rules.SECRET_NAME)
    value: str = Field(description=f"at most {MAX_SECRET_BYTES} bytes (UTF-8)")


class SecretOut(BaseModel):
    name: str
    created_at: float | None = None


@router.post(
    "", status_code=201, response_model=SecretOut, responses=responses(Conflict, PayloadTooLarge)
)
async def create_secret(body: SecretIn, who: Deployer, svc: Svc) -> SecretOut:
    """Stored encrypted; no endpoint ever returns the value."""
    await svc.secrets.create(who.project, body.name, body.value)
    return SecretOut(name=body.name)


@router.get("", response_model=list[SecretOut])
async def list_secrets(who: Reader, svc: Svc) -> list[SecretOut]:
    return [SecretOut(name=n, created_at=at) for n, at in await svc.secrets.names(who.project)]


@router.delete("/{name}", status_code=204, responses=responses(NotFound))
async def delete_secret(name: str, who: Deployer, svc: Svc) -> None:
    await svc.secrets.delete(who.project, name)
