"""/v1/node-tokens: the credentials `pratai node` processes present (platform admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from pratai.api import rules
from pratai.api.deps import Services, principal, services
from pratai.api.errors import AUTHENTICATED, responses
from pratai.api.schemas import Input
from pratai.core.models import NodeToken
from pratai.core.tenants import Principal
from pratai.errors import NotFound

router = APIRouter(prefix="/v1/node-tokens", tags=["platform"], responses=responses(*AUTHENTICATED))

# Any key gets this far; the core answers 403 to all but admins of the default project.
Anyone = Annotated[Principal, Depends(principal)]
Svc = Annotated[Services, Depends(services)]


class NodeTokenIn(Input):
    name: str = Field(
        description="a note: which machine the token is for",
        json_schema_extra=rules.NODE_TOKEN_NAME,
    )


class NodeTokenOut(BaseModel):
    id: str
    name: str
    created_at: float
    revoked_at: float | None

    @classmethod
    def of(cls, token: NodeToken) -> NodeTokenOut:
        return cls(
            id=token.id, name=token.name, created_at=token.created_at, revoked_at=token.revoked_at
        )


class NewNodeToken(NodeTokenOut):
    token: str = Field(description="shown once; only its hash is stored")


@router.post("", status_code=201, response_model=NewNodeToken)
async def create_node_token(body: NodeTokenIn, who: Anyone, svc: Svc) -> NewNodeToken:
    """A token for one machine to run nodes with (`PRATAI_NODE_TOKEN`); it is shown this once.
    A node receives every project's work and secrets, so only admins of the default project
    create, list and revoke node tokens."""
    stored, token = await svc.node_tokens.create(who, body.name)
    return NewNodeToken(**NodeTokenOut.of(stored).model_dump(), token=token)


@router.get("", response_model=list[NodeTokenOut])
async def list_node_tokens(who: Anyone, svc: Svc) -> list[NodeTokenOut]:
    """Every node token, oldest first, revoked ones included (never their secrets)."""
    return [NodeTokenOut.of(t) for t in await svc.node_tokens.list(who)]


@router.delete("/{token_id}", status_code=204, responses=responses(NotFound))
async def revoke_node_token(token_id: str, who: Anyone, svc: Svc) -> None:
    """Revoked at once: nodes presenting it are refused (within a few seconds on other api
    processes). Revoking a revoked token again changes nothing."""
    await svc.node_tokens.revoke(who, token_id)
