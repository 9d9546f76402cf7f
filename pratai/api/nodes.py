"""/v1/node-tokens: the credentials `pratai node` processes present (platform admins only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from pratai.api import rules
from pratai.api.deps import Services, allowed, principal, services
from pratai.api.errors import AUTHENTICATED, responses
from pratai.api.schemas import Input
from pratai.core.models import NodeToken
from pratai.core.node_tokens import NodeTokens
from pratai.core.tenants import Principal
from pratai.errors import Conflict, NotFound

router = APIRouter(prefix="/v1/node-tokens", tags=["platform"], responses=responses(*AUTHENTICATED))


async def _platform_admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    NodeTokens.allow(who)  # 403 before the body is read; the core checks again
    return who


Admin = Annotated[Principal, Depends(_platform_admin)]
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
async def create_node_token(body: NodeTokenIn, who: Admin, svc: Svc) -> NewNodeToken:
    """A token for one machine to run nodes with (`PRATAI_NODE_TOKEN`); it is shown this once.
    A node receives every project's work and secrets, so only admins of the default project
    create, list and revoke node tokens."""
    stored, token = await svc.node_tokens.create(who, body.name)
    return NewNodeToken(**NodeTokenOut.of(stored).model_dump(), token=token)


@router.get("", response_model=list[NodeTokenOut])
async def list_node_tokens(who: Admin, svc: Svc) -> list[NodeTokenOut]:
    """Every node token, oldest first, revoked ones included (never their secrets)."""
    return [NodeTokenOut.of(t) for t in await svc.node_tokens.list(who)]


@router.delete("/{token_id}", status_code=204, responses=responses(NotFound))
async def revoke_node_token(token_id: str, who: Admin, svc: Svc) -> None:
    """Revoked at once: nodes presenting it are refused (within a few seconds on other api
    processes). Revoking a revoked token again changes nothing."""
    await svc.node_tokens.revoke(who, token_id)


# --- /v1/nodes: the nodes that run calls --------------------------------------------------

nodes_router = APIRouter(prefix="/v1/nodes", tags=["platform"], responses=responses(*AUTHENTICATED))
Operator = Annotated[Principal, Depends(allowed("operate"))]


class NodeMemory(BaseModel):
    budget_mb: int = Field(description="PRATAI_NODE_MEMORY_MB of the node")
    used_mb: int = Field(description="memory limits of its running instances, added up")


class NodeOut(BaseModel):
    name: str
    state: str = Field(
        description="ready (takes work), draining (finishes what it has, takes none), stopping, "
        "stopped, lost (no heartbeat within PRATAI_NODE_LOST_S), unauthorized (its token is "
        "unknown or revoked)"
    )
    memory: NodeMemory
    slots: int | None = Field(description="calls it runs at once, at most (PRATAI_NODE_SLOTS)")
    busy: int = Field(description="calls running now")
    load: float = Field(description="the machine's 1-minute load average")
    warm: list[str] = Field(description="'<function id>:<version>' of its warm instances")
    runtimes: list[str] | None
    started_at: float
    last_heartbeat_s: float = Field(description="seconds since its last heartbeat")


@nodes_router.get("", response_model=list[NodeOut])
async def list_nodes(who: Operator, svc: Svc) -> list[dict[str, Any]]:
    """Every node this api process hears from (`pratai serve`: its own, named local), with
    its state, capacity, load and warm versions. Lost nodes stay listed for 10 minutes."""
    return svc.nodes.nodes() if svc.nodes is not None else []


@nodes_router.post("/{name}/drain", response_model=NodeOut, responses=responses(NotFound, Conflict))
async def drain_node(name: str, who: Operator, svc: Svc) -> dict[str, Any]:
    """New work stops going to the node; it finishes what it has. 409 when the node does not
    answer (lost, stopped) or for `pratai serve`'s own node."""
    if svc.nodes is None:
        raise NotFound(f"no node {name!r}")
    return await svc.nodes.drain(name, True)


@nodes_router.delete(
    "/{name}/drain", response_model=NodeOut, responses=responses(NotFound, Conflict)
)
async def undrain_node(name: str, who: Operator, svc: Svc) -> dict[str, Any]:
    """The node takes new work again."""
    if svc.nodes is None:
        raise NotFound(f"no node {name!r}")
    return await svc.nodes.drain(name, False)
