"""Projects and API keys. A key is `pk_<id>.<secret>`; only a hash of the secret is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from pratai.core.models import ApiKey, Project, Role, new_id, now
from pratai.errors import Unauthorized
from pratai.store import Store

DEFAULT_PROJECT = "default"
_CACHE_SECONDS = 5.0


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's project and role."""

    key_id: str
    project: Project
    role: Role


class Tenants:
    def __init__(self, store: Store) -> None:
        self.store = store
        # A verified token is trusted for a few seconds so the hot path skips the store.
        self._verified: dict[str, tuple[float, Principal]] = {}

    async def ensure_project(self, name: str = DEFAULT_PROJECT) -> Project:
        project = await self.store.get_project_by_name(name)
        if project is None:
            project = Project(id=new_id(), name=name)
            await self.store.create_project(project)
        return project

    async def create_key(self, project: Project, role: Role, name: str = "") -> str:
        """Returns the token; it is never retrievable again."""
        key_id = "pk_" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        await self.store.create_key(
            ApiKey(
                id=key_id, project_id=project.id, role=role, secret_hash=_hash(secret), name=name
            )
        )
        return f"{key_id}.{secret}"

    async def authenticate(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        key_id, _, secret = token.partition(".")
        key = await self.store.get_key(key_id) if key_id and secret else None
        if key is None or not hmac.compare_digest(key.secret_hash, _hash(secret)):
            raise Unauthorized("invalid API key")
        if key.revoked_at is not None:
            raise Unauthorized("this API key was revoked")
        if key.expires_at is not None and key.expires_at <= now():
            raise Unauthorized("this API key has expired")
        project = await self.store.get_project(key.project_id)
        if project is None:
            raise Unauthorized("invalid API key")
        principal = Principal(key_id=key.id, project=project, role=key.role)
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (time.monotonic() + _CACHE_SECONDS, principal)
        return principal
