"""Records every authenticated request that changes or runs something (pure ASGI, no bodies)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pratai.core.models import AuditEntry
from pratai.core.tenants import Principal

_READ_ONLY = {"GET", "HEAD", "OPTIONS"}


class AuditMiddleware:
    def __init__(self, app: ASGIApp, record: Callable[[AuditEntry], Awaitable[None]]) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READ_ONLY:
            await self.app(scope, receive, send)
            return
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            state: dict[str, Any] = scope.get("state", {})
            who = state.get("principal")
            if isinstance(who, Principal):
                await self.record(
                    AuditEntry(
                        project_id=who.project.id,
                        key_id=who.key_id,
                        user_id=who.user_id,
                        action=scope["method"],
                        target=scope["path"],
                        status=status,
                    )
                )
