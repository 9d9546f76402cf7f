"""/v1/connectors: external sources whose messages become events on a topic."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from pratai.api.deps import Services, allowed, services
from pratai.connectors.registry import redact_url
from pratai.core.models import ConnectorRecord
from pratai.core.tenants import Principal

router = APIRouter(prefix="/v1/connectors", tags=["connectors"])

Reader = Annotated[Principal, Depends(allowed("read"))]
Deployer = Annotated[Principal, Depends(allowed("deploy"))]
Svc = Annotated[Services, Depends(services)]


class ConnectorIn(BaseModel):
    name: str
    kind: str
    url: str
    topic: str
    options: dict[str, str] = {}


class ConnectorOut(BaseModel):
    name: str
    kind: str
    url: str  # credentials redacted
    topic: str
    options: dict[str, str]
    connected: bool
    forwarded: int
    last_error: str | None
    last_error_at: float | None
    created_at: float


def _out(svc: Services, record: ConnectorRecord) -> ConnectorOut:
    status = svc.connectors.status(record)
    return ConnectorOut(
        name=record.name,
        kind=record.kind,
        url=redact_url(record.url),
        topic=record.topic,
        options=record.options,
        connected=status.connected,
        forwarded=status.forwarded,
        last_error=status.last_error,
        last_error_at=status.last_error_at,
        created_at=record.created_at,
    )


@router.post("", status_code=201, response_model=ConnectorOut)
async def create_connector(body: ConnectorIn, who: Deployer, svc: Svc) -> ConnectorOut:
    record = await svc.connectors.create(
        who.project, body.name, body.kind, body.url, body.topic, body.options
    )
    return _out(svc, record)


@router.get("", response_model=list[ConnectorOut])
async def list_connectors(who: Reader, svc: Svc) -> list[ConnectorOut]:
    return [_out(svc, r) for r in await svc.connectors.all(who.project)]


@router.get("/{name}", response_model=ConnectorOut)
async def show_connector(name: str, who: Reader, svc: Svc) -> ConnectorOut:
    """Whether it is connected, how many events it forwarded, and its last error."""
    return _out(svc, await svc.connectors.get(who.project, name))


@router.delete("/{name}", status_code=204)
async def delete_connector(name: str, who: Deployer, svc: Svc) -> None:
    await svc.connectors.delete(who.project, name)
