"""Projects and API keys. A key is `pk_<id>.<secret>`; only a hash of the secret is stored."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from pratai.core.models import ApiKey, AuditEntry, Project, Role, User, check_name, new_id, now
from pratai.core.ports import RateCounter, TenancyStore
from pratai.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized

DEFAULT_PROJECT = "default"
_CACHE_SECONDS = 5.0
# How long the first of a round of audit entries waits for others to be written with it.
AUDIT_GATHER_S = 0.01


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's project and role (and user, when the key belongs to one)."""

    key_id: str
    project: Project
    role: Role
    user_id: str | None = None
    rate_limit: int | None = None
    rate_window_s: float | None = None

    @property
    def platform_admin(self) -> bool:
        """Admins of the `default` project administer the platform: every project."""
        return self.role == Role.ADMIN and self.project.name == DEFAULT_PROJECT


@dataclass(frozen=True)
class Member:
    """A user of a project: their highest role there and how many active keys hold it."""

    id: str
    name: str
    role: Role
    active_keys: int
    since: float
    has_password: bool


RANK = {Role.VIEWER: 0, Role.INVOKER: 1, Role.DEVELOPER: 2, Role.ADMIN: 3}

# What each role may do: the API's route checks and the console's buttons read the same table.
ALLOWED: dict[str, set[Role]] = {
    "read": {Role.ADMIN, Role.DEVELOPER, Role.INVOKER, Role.VIEWER},
    "invoke": {Role.ADMIN, Role.DEVELOPER, Role.INVOKER},
    "deploy": {Role.ADMIN, Role.DEVELOPER},
    "administer": {Role.ADMIN},  # users and projects
    "operate": {Role.ADMIN},  # the machine itself (platform admins only): every project's pools
}


def may(who: Principal, action: str) -> bool:
    return who.role in ALLOWED[action] and (action != "operate" or who.platform_admin)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'30d', '12h', '15m', '90s' -> seconds."""
    number, unit = text[:-1], text[-1:].lower()
    if unit not in _UNITS or not (number.isascii() and number.isdigit()) or int(number) <= 0:
        raise InvalidInput(f"invalid duration {text!r}: use e.g. 30d, 12h, 15m or 90s")
    return int(number) * _UNITS[unit]


class _Store(TenancyStore, RateCounter, Protocol):
    """What `Tenants` keeps: projects, keys, users, the audit log, and keys' request counts."""


class Tenants:
    def __init__(self, store: _Store) -> None:
        self.store = store
        # A verified token is trusted for a few seconds so the hot path skips the store.
        self._verified: dict[str, tuple[float, Principal]] = {}
        self._audit_pending: list[AuditEntry] = []
        self._audit_writing: asyncio.Future[None] | None = None  # set while entries are written

    async def ensure_project(self, name: str = DEFAULT_PROJECT) -> Project:
        project = await self.store.get_project_by_name(name)
        if project is None:
            project = Project(id=new_id(), name=name)
            await self.store.create_project(project)
        return project

    async def create_key(
        self,
        project: Project,
        role: Role,
        name: str = "",
        *,
        user_id: str | None = None,
        expires_at: float | None = None,
        rate: tuple[int, float] | None = None,
    ) -> str:
        """Returns the token; it is never retrievable again."""
        key_id = "pk_" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        await self.store.create_key(
            ApiKey(
                id=key_id,
                project_id=project.id,
                role=role,
                secret_hash=_hash(secret),
                name=name,
                user_id=user_id,
                expires_at=expires_at,
                rate_limit=rate[0] if rate else None,
                rate_window_s=rate[1] if rate else None,
            )
        )
        return f"{key_id}.{secret}"

    async def limit(self, who: Principal) -> None:
        """Count a request against the key's own rate limit (shared by every api process)."""
        if not who.rate_limit or not who.rate_window_s:
            return
        at = time.time()
        window = int(at // who.rate_window_s)
        if await self.store.hit(f"key:{who.key_id}", window) > who.rate_limit:
            raise RateLimited(
                f"this key is over its limit of {who.rate_limit} requests per "
                f"{who.rate_window_s:g} s",
                (window + 1) * who.rate_window_s - at,
            )

    async def has_keys(self, project: Project) -> bool:
        return bool(await self.store.list_keys(project.id))

    async def project_named(self, name: str) -> Project | None:
        return await self.store.get_project_by_name(name)

    async def audit(self, entry: AuditEntry) -> None:
        """Stores the entry. The first caller waits AUDIT_GATHER_S, then writes every entry that
        arrived meanwhile, and those arriving during its write, in one statement each round;
        the others return at once. So a busy process writes the audit log in a few statements
        a second instead of one per request, and a warm call's own write does not queue
        behind the previous call's entry. The middleware records after the answer has gone,
        so a crash right after an answer could always lose its entry; this widens that window
        to AUDIT_GATHER_S and a write. This process's `audit_log` waits for its pending
        entries; another process's shows them that much later."""
        self._audit_pending.append(entry)
        if self._audit_writing is not None:
            return  # the running writer takes it
        done = self._audit_writing = asyncio.get_running_loop().create_future()
        try:
            await asyncio.sleep(AUDIT_GATHER_S)
            while self._audit_pending:
                batch, self._audit_pending = self._audit_pending, []
                await self.store.add_audits(batch)
        finally:
            self._audit_writing = None
            done.set_result(None)

    async def audit_log(
        self,
        project: Project,
        limit: int = 100,
        *,
        action: str | None = None,
        key_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[AuditEntry]:
        """Newest first; narrowed to an action (HTTP method), a key and a time window."""
        if self._audit_writing is not None:  # this process's own requests are in it
            await asyncio.shield(self._audit_writing)
        return await self.store.list_audit(
            project.id, limit, action=action, key_id=key_id, since=since, until=until
        )

    # --- administration, as a principal -------------------------------------------------

    async def project_for(self, who: Principal, name: str | None) -> Project:
        """The project `who` may administer by that name (their own when None)."""
        if name is None or name == who.project.name:
            return who.project
        project = await self.store.get_project_by_name(name)
        if project is None or not who.platform_admin:
            raise NotFound(f"project {name!r} not found", project=name)
        return project

    async def create_project(self, who: Principal, name: str) -> Project:
        if not who.platform_admin:
            raise Forbidden("only admins of the default project create projects")
        check_name(name, "project")
        project = Project(id=new_id(), name=name)
        try:
            await self.store.create_project(project)
        except Conflict:
            raise Conflict(f"project {name!r} already exists", project=name) from None
        return project

    async def projects(self, who: Principal) -> list[Project]:
        return await self.store.list_projects() if who.platform_admin else [who.project]

    async def create_user(
        self, who: Principal, name: str, project_name: str, role: Role
    ) -> tuple[User, str]:
        """A user with a first key in the project; returns the user and that key's token."""
        project = await self.project_for(who, project_name)
        if who.role != Role.ADMIN:
            raise Forbidden("only admins create users")
        check_name(name, "user")
        user = User(id=new_id(), name=name)
        try:
            await self.store.create_user(user)
        except Conflict:
            raise Conflict(f"user {name!r} already exists", user=name) from None
        token = await self.create_key(project, role, f"{name}'s key", user_id=user.id)
        return user, token

    async def issue_key(
        self,
        who: Principal,
        project_name: str | None,
        role: Role,
        expires_in_s: float | None = None,
        name: str = "",
        rate: tuple[int, float] | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key in a project `who` may administer, never with a role above theirs."""
        project = await self.project_for(who, project_name)
        if RANK[role] > RANK[who.role] or who.role == Role.VIEWER:
            raise Forbidden(f"a {who.role} key cannot create {role} keys")
        expires_at = now() + expires_in_s if expires_in_s else None
        token = await self.create_key(
            project, role, name, user_id=who.user_id, expires_at=expires_at, rate=rate
        )
        key = await self.store.get_key(token.partition(".")[0])
        assert key is not None
        return key, token

    async def members(self, who: Principal) -> list[Member]:
        """The users with an active key in `who`'s project, with their highest role there."""
        best: dict[str, tuple[Role, int]] = {}
        for key in await self.store.list_keys(who.project.id):
            active = key.revoked_at is None and (key.expires_at is None or key.expires_at > now())
            if key.user_id is None or not active:
                continue
            role, count = best.get(key.user_id, (Role.VIEWER, 0))
            best[key.user_id] = (max(role, key.role, key=RANK.__getitem__), count + 1)
        found = []
        for user_id, (role, count) in best.items():
            user = await self.store.get_user(user_id)
            if user is not None:
                found.append(
                    Member(
                        user.id,
                        user.name,
                        role,
                        count,
                        user.created_at,
                        user.password_hash is not None,
                    )
                )
        return sorted(found, key=lambda m: m.name)

    async def keys(self, who: Principal, project_name: str | None) -> list[ApiKey]:
        project = await self.project_for(who, project_name)
        return await self.store.list_keys(project.id)

    async def revoke(self, who: Principal, key_id: str) -> None:
        key = await self.store.get_key(key_id)
        visible = key is not None and (key.project_id == who.project.id or who.platform_admin)
        if key is None or not visible:
            raise NotFound(f"key {key_id!r} not found", key=key_id)
        if who.role != Role.ADMIN and key.id != who.key_id:
            raise Forbidden("only admins revoke other keys")
        if key.revoked_at is not None:
            return
        default = await self.store.get_project_by_name(DEFAULT_PROJECT)
        # Admins of the default project administer the platform: one of them must remain.
        keep_admin_in = None
        if key.role == Role.ADMIN and default is not None and key.project_id == default.id:
            keep_admin_in = default.id
        if not await self.store.revoke_key(key_id, now(), keep_admin_in=keep_admin_in):
            raise Conflict(
                f"key {key_id} was not revoked: without it the default project would have no"
                " admin key that is active and never expires, and nobody could administer the"
                " platform. Create another admin key first (`pratai key-create --role admin`),"
                " then revoke this one. (The operator of the server can always mint one with"
                " `pratai admin-key`.)",
                key=key_id,
            )
        self._verified = {t: v for t, v in self._verified.items() if v[1].key_id != key_id}

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
        principal = Principal(
            key_id=key.id,
            project=project,
            role=key.role,
            user_id=key.user_id,
            rate_limit=key.rate_limit,
            rate_window_s=key.rate_window_s,
        )
        if len(self._verified) > 10_000:
            self._verified.clear()
        trusted_for = _CACHE_SECONDS
        if key.expires_at is not None:  # never trust a key past its expiry
            trusted_for = min(trusted_for, key.expires_at - now())
        self._verified[token] = (time.monotonic() + trusted_for, principal)
        return principal
