"""Node tokens: what a `pratai node` process (no database credentials) presents to the control
plane before it is sent work. A token is `nt_<id>.<secret>`; only a hash of the secret is stored.

A node receives every project's work and the secrets that work uses, so only platform admins
(admins of the `default` project) create, list and revoke tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable

from pratai.core.models import NodeToken, now
from pratai.core.ports import NodeTokenStore
from pratai.core.tenants import Principal
from pratai.errors import Forbidden, InvalidInput, NotFound

# A note on which machine a token is for: one printable line. The OpenAPI document states it.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
MAX_NAME = 255
_NAME = re.compile(NAME_PATTERN)
_CACHE_SECONDS = 5.0  # how long another process's revoke may take to apply here


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_token_name(name: str) -> str:
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise InvalidInput(
            f"invalid node token name {name!r}: use 1-{MAX_NAME} characters on one line, "
            "e.g. the machine's host name",
            name=name,
        )
    return name


class NodeTokens:
    def __init__(
        self, store: NodeTokenStore, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self._clock = clock
        # A verified token is trusted for a few seconds so a node's requests skip the store.
        self._verified: dict[str, tuple[float, NodeToken]] = {}

    @staticmethod
    def allow(who: Principal) -> None:
        """Raises Forbidden for all but platform admins (the API checks it before reading a
        request's body, so others learn nothing of what it should hold)."""
        if not who.platform_admin:
            raise Forbidden(
                "only admins of the default project manage node tokens: a node token lets a"
                " machine receive every project's work and secrets"
            )

    async def create(self, who: Principal, name: str) -> tuple[NodeToken, str]:
        """The stored token and its `<id>.<secret>` string, which is never retrievable again."""
        self.allow(who)
        check_token_name(name)
        secret = secrets.token_urlsafe(32)
        token = NodeToken(id="nt_" + secrets.token_hex(8), name=name, secret_hash=_hash(secret))
        await self.store.create_node_token(token)
        return token, f"{token.id}.{secret}"

    async def list(self, who: Principal) -> list[NodeToken]:
        """Oldest first, revoked ones included."""
        self.allow(who)
        return await self.store.list_node_tokens()

    async def revoke(self, who: Principal, token_id: str) -> None:
        """At once in this process; other processes stop trusting it within a few seconds."""
        self.allow(who)
        if not await self.store.revoke_node_token(token_id, now()):
            raise NotFound(f"node token {token_id!r} not found", token=token_id)
        self._verified = {t: v for t, v in self._verified.items() if v[1].id != token_id}

    async def verify(self, token: str) -> NodeToken | None:
        """The token's record when it is well-formed, known, unrevoked and its secret right;
        else None."""
        cached = self._verified.get(token)
        if cached and cached[0] > self._clock():
            return cached[1]
        token_id, _, secret = token.partition(".")
        found = await self.store.get_node_token(token_id) if token_id and secret else None
        if found is None or not hmac.compare_digest(found.secret_hash, _hash(secret)):
            return None
        if found.revoked_at is not None:
            self._verified.pop(token, None)
            return None
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (self._clock() + _CACHE_SECONDS, found)
        return found
