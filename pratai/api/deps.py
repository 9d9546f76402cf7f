"""What route handlers receive: the services of this process and the calling principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, UploadFile

from pratai.auth import Authenticator
from pratai.core.capacity import NodeDirectory
from pratai.core.connectors import Connectors
from pratai.core.events import Events
from pratai.core.functions import Functions
from pratai.core.gateway import Gateway
from pratai.core.images import Images
from pratai.core.invocations import Invocations
from pratai.core.jobs import Jobs
from pratai.core.node_tokens import NodeTokens
from pratai.core.saved_jobs import SavedJobs
from pratai.core.saved_payloads import SavedPayloads
from pratai.core.secrets import Secrets
from pratai.core.stats import Stats
from pratai.core.tenants import Principal, Tenants, may
from pratai.core.triggers import Triggers
from pratai.errors import Forbidden, PayloadTooLarge, Unauthorized
from pratai.metrics import Metrics
from pratai.settings import Settings


@dataclass(kw_only=True)
class Services:
    settings: Settings
    tenants: Tenants
    functions: Functions
    invocations: Invocations
    events: Events
    triggers: Triggers
    connectors: Connectors
    secrets: Secrets
    auth: Authenticator
    gateway: Gateway
    jobs: Jobs
    saved_jobs: SavedJobs
    saved_payloads: SavedPayloads
    node_tokens: NodeTokens
    stats: Stats  # usage statistics for the console
    node_stats: Callable[[], dict[str, Any]] | None = None
    images: Images | None = None
    nodes: NodeDirectory | None = None  # GET /v1/nodes
    metrics: Metrics | None = None  # GET /metrics
    # True once the process is shutting down: endless streams (the console's live logs) end
    # then, since the server waits for open requests before it stops.
    stopping: Callable[[], bool] = lambda: False


def services_of(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def services(request: Request) -> Services:
    """The dependency form (async, so FastAPI does not hand it to a thread)."""
    return services_of(request)


async def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    svc = services_of(request)
    who = await svc.auth.authenticate(token.strip())
    request.state.principal = who  # for the audit log
    await svc.tenants.limit(who)
    return who


def allowed(action: str) -> Callable[[Request], Awaitable[Principal]]:
    async def check(request: Request) -> Principal:
        who = await principal(request)
        if not may(who, action):
            raise Forbidden(f"role {who.role} may not {action}")
        return who

    return check


async def read_upload(upload: UploadFile, limit: int, what: str = "package") -> bytes:
    """An uploaded file, refused with 413 when it is over `limit` bytes."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{what} is over the limit of {limit} bytes", limit=limit)
    return data


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes; the limit is {limit} bytes", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)
