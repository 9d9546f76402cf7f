"""/v1/connectors: external sources whose messages become events on a topic."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from pratai.api import rules
from pratai.api.deps import Services, allowed, services
from pratai.api.errors import AUTHENTICATED, responses
from pratai.api.schemas import Input
from pratai.connectors.base import ConnectorStatus
from pratai.connectors.registry import KINDS, redact_url
from pratai.core.models import ConnectorRecord
from pratai.core.tenants import Principal
from pratai.errors import Conflict, NotFound

router = APIRouter(
    prefix="/v1/connectors", tags=["connectors"], responses=responses(*AUTHENTICATED)
)

Reader = Annotated[Principal, Depends(allowed("read"))]
Deployer = Annotated[Principal, Depends(allowed("deploy"))]
Svc = Annotated[Services, Depends(services)]


# The values `pratai.connectors.registry.make_connector` checks beyond "not blank".
_OPTION_VALUES: dict[str, dict[str, Any]] = {
    "subject": {"pattern": r"^(?!\.)(?!.*\.\.)\S+$"},  # a NATS subject
    "source_topic": {"pattern": r"^(#|[^#]*/#|[^#]*\S[^#]*)$"},  # an MQTT filter: "#" last
    "qos": {"enum": ["0", "1"]},
    "prefetch": {"pattern": f"^{rules.PORT}$"},  # 1..65535
}


def _option(name: str, required: bool) -> dict[str, Any]:
    return {"type": "string", **_OPTION_VALUES.get(name, {"pattern": r"\S"} if required else {})}


def _kind_rules() -> list[Any]:
    """Each kind's URL schemes and options (`pratai.connectors.registry.KINDS`)."""
    documented = []
    for kind, spec in KINDS.items():
        options = {
            name: _option(name, name in spec.required) for name in spec.required + spec.optional
        }
        documented.append(
            {
                "if": {"properties": {"kind": {"const": kind}}},
                "then": {
                    "required": ["options"],
                    "properties": {
                        "url": rules.connector_url(spec.schemes),
                        "options": {
                            "required": list(spec.required),
                            "properties": options,
                            "propertyNames": {"enum": list(options)},
                        },
                    },
                },
            }
        )
    return documented


class ConnectorIn(Input):
    model_config = ConfigDict(strict=True, json_schema_extra={"allOf": _kind_rules()})

    name: str = Field(json_schema_extra=rules.NAME)
    kind: str = Field(json_schema_extra={"enum": list(KINDS)})
    url: str = Field(description="where to read from; credentials are never shown again")
    topic: str = Field(description="the topic events go to", json_schema_extra=rules.TOPIC)
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


async def _outs(svc: Services, records: list[ConnectorRecord]) -> list[ConnectorOut]:
    statuses = await svc.connectors.statuses(records)
    return [_out(record, statuses[record.id]) for record in records]


def _out(record: ConnectorRecord, status: ConnectorStatus) -> ConnectorOut:
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


@router.post("", status_code=201, response_model=ConnectorOut, responses=responses(Conflict))
async def create_connector(body: ConnectorIn, who: Deployer, svc: Svc) -> ConnectorOut:
    record = await svc.connectors.create(
        who.project, body.name, body.kind, body.url, body.topic, body.options
    )
    (created,) = await _outs(svc, [record])
    return created


@router.get("", response_model=list[ConnectorOut])
async def list_connectors(who: Reader, svc: Svc) -> list[ConnectorOut]:
    return await _outs(svc, await svc.connectors.all(who.project))


@router.get("/{name}", response_model=ConnectorOut, responses=responses(NotFound))
async def show_connector(name: str, who: Reader, svc: Svc) -> ConnectorOut:
    """Whether it is connected, how many events it forwarded, and its last error."""
    (shown,) = await _outs(svc, [await svc.connectors.get(who.project, name)])
    return shown


@router.delete("/{name}", status_code=204, responses=responses(NotFound))
async def delete_connector(name: str, who: Deployer, svc: Svc) -> None:
    await svc.connectors.delete(who.project, name)
