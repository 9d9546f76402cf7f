"""Web console sessions and the passwords users sign in with.

A session is a short-lived API key minted at sign-in, with the signer's project, role and user:
every check an API key gets (revocation, expiry, role, rate limit) holds for a session, a sign-out
revokes it, and the keys page lists it. The browser holds its token in an HttpOnly cookie; the
key a user signed in with never sits in a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pratai.core.models import ApiKey, Project, Role, now
from pratai.core.tenants import RANK, Principal, Tenants
from pratai.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized

SESSION_S = 12 * 3600
SESSION_KEY_NAME = "console session"
MIN_PASSWORD = 8
# Passwords are guessed by trying: each user name gets this many tries per window.
SIGNIN_TRIES = 10
SIGNIN_WINDOW_S = 300
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str | None) -> bool:
    scheme, _, rest = (stored or "").partition("$")
    salt, _, digest = rest.partition("$")
    if scheme != "scrypt" or not salt or not digest:
        return False
    given = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), **_SCRYPT)
    return hmac.compare_digest(given.hex(), digest)


def csrf_token(session_token: str) -> str:
    """Derived from the session's secret, so only a page of that session can know it."""
    return hmac.new(session_token.encode(), b"pratai console csrf", hashlib.sha256).hexdigest()


def _usable(key: ApiKey) -> bool:
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > now())


class Sessions:
    def __init__(self, tenants: Tenants) -> None:
        self.tenants = tenants

    async def set_password(self, who: Principal, user_name: str, password: str) -> None:
        """Users set their own; admins set those of users with a key in their project."""
        if len(password) < MIN_PASSWORD:
            raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
        user = await self.tenants.store.get_user_by_name(user_name)
        if user is None:
            raise NotFound(f"user {user_name!r} not found", user=user_name)
        if user.id != who.user_id:
            keys = await self.tenants.store.user_keys(user.id)
            in_reach = any(k.project_id == who.project.id for k in keys) or who.platform_admin
            if not in_reach:
                raise NotFound(f"user {user_name!r} not found", user=user_name)
            if who.role != Role.ADMIN:
                raise Forbidden("only admins set other users' passwords")
        await self.tenants.store.set_password(user.id, hash_password(password))

    async def with_password(self, name: str, password: str, project: str = "") -> str:
        """A session for a user; in `project`, or where the user's role is highest."""
        window = int(now() // SIGNIN_WINDOW_S)
        if await self.tenants.store.hit(f"signin:{name}", window) > SIGNIN_TRIES:
            raise RateLimited(
                f"too many sign-in attempts for {name!r}; try again later",
                (window + 1) * SIGNIN_WINDOW_S - now(),
            )
        user = await self.tenants.store.get_user_by_name(name)
        if user is None or not password_matches(password, user.password_hash):
            hash_password(password)  # as slow for an unknown name as for a wrong password
            raise Unauthorized("wrong user name or password")
        keys = [k for k in await self.tenants.store.user_keys(user.id) if _usable(k)]
        if project:
            named = await self.tenants.project_named(project)
            keys = [k for k in keys if named is not None and k.project_id == named.id]
        if not keys:
            raise Forbidden(f"user {name!r} has no active key{' there' if project else ''}")
        best = max(keys, key=lambda k: RANK[k.role])
        target = await self.tenants.store.get_project(best.project_id)
        assert target is not None
        return await self._open(target, best.role, user.id)

    async def with_key(self, token: str) -> str:
        """A session with the key's project, role and user (and no longer than the key)."""
        who = await self.tenants.authenticate(token)
        key = await self.tenants.store.get_key(who.key_id)
        until = key.expires_at if key is not None else None
        return await self._open(who.project, who.role, who.user_id, until)

    async def _open(
        self, project: Project, role: Role, user_id: str | None, until: float | None = None
    ) -> str:
        expires = now() + SESSION_S
        return await self.tenants.create_key(
            project,
            role,
            SESSION_KEY_NAME,
            user_id=user_id,
            expires_at=min(expires, until) if until else expires,
        )

    async def who(self, token: str) -> Principal:
        return await self.tenants.authenticate(token)

    async def close(self, who: Principal) -> None:
        await self.tenants.revoke(who, who.key_id)
