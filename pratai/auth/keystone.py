"""OpenStack Keystone as an authentication backend.

A caller sends a Keystone v3 token as its bearer token. Pratai validates it with Keystone
(`GET /v3/auth/tokens`, the token in `X-Subject-Token`), then maps:

- the token's project to the Pratai project of the same name, created on first sight. Projects
  are matched by name only, so same-named projects of different Keystone domains would share one
  Pratai project: pass `domain=` (a domain id or name) to accept only one domain's projects.
  A Keystone project whose name is not a valid Pratai project name (lowercase letters, digits,
  '-', '_') is refused. Note that admins of a project named `default` administer the platform.
- the token's roles to one Pratai role, the strongest mapped one (`DEFAULT_ROLE_MAP`: admin ->
  admin, member/_member_ -> developer, invoker -> invoker, reader -> viewer; role names compare
  case-insensitively). A token with no mapped role is refused.

Validated tokens are trusted for `cache_seconds` (never past the token's `expires_at`), so a
token revoked in Keystone keeps working here for at most that long.

By default a token validates itself (Keystone's policy lets a token's subject validate it); with
`service_token` set, Pratai's own token authorizes the validation instead. Pratai does not renew
a service token: give it a long-lived one, or construct the authenticator again.

This backend is tested against a recorded token-validation contract (a fake Keystone serving
responses copied from Keystone's API reference), not against a running Keystone.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from pratai.core.models import Project, Role, check_name, new_id
from pratai.core.ports import ProjectStore
from pratai.core.tenants import RANK, Principal
from pratai.errors import Conflict, InvalidName, Unauthorized, Unavailable
from pratai.keystone_api import tokens_url

__all__ = ["DEFAULT_ROLE_MAP", "KeystoneAuthenticator"]

log = logging.getLogger("pratai.auth.keystone")

DEFAULT_ROLE_MAP: dict[str, Role] = {
    "admin": Role.ADMIN,
    "member": Role.DEVELOPER,
    "_member_": Role.DEVELOPER,
    "invoker": Role.INVOKER,
    "reader": Role.VIEWER,
}

# Keystone tokens (Fernet, JWS) are short printable ASCII; anything else cannot be one, and must
# not reach an HTTP header.
_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")
_MAX_CACHED = 10_000


def _expires_at(value: Any) -> float | None:
    """Keystone's `expires_at` ("2015-11-07T02:58:43.578887Z") as Unix time, None if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Clock(Protocol):
    """The wall clock (tokens' expiries) and the monotonic one (the cache's deadlines): the
    `time` module, or a test's clock that moves when told."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class KeystoneAuthenticator:
    """Authenticates Keystone v3 tokens as principals of the Pratai project of the same name."""

    def __init__(
        self,
        auth_url: str,
        store: ProjectStore,
        *,
        role_map: dict[str, Role] | None = None,
        cache_seconds: float = 30.0,
        http: httpx.AsyncClient | None = None,
        service_token: str | None = None,
        domain: str | None = None,
        timeout: float = 10.0,
        clock: Clock = time,
    ) -> None:
        """`role_map` replaces DEFAULT_ROLE_MAP (Keystone role name -> Pratai role). `http` is
        used as given and not closed; without it the authenticator owns a client (`aclose`). `clock`
        is where it reads the time (a test's, to step past a deadline)."""
        self.tokens_url = tokens_url(auth_url)
        self.store = store
        self.role_map = {
            name.lower(): role for name, role in (role_map or DEFAULT_ROLE_MAP).items()
        }
        self.cache_seconds = cache_seconds
        self.service_token = service_token
        self.domain = domain
        self._clock = clock
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout)
        # sha256(token) -> (monotonic deadline, principal): no raw tokens kept in memory.
        self._verified: dict[str, tuple[float, Principal]] = {}

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def authenticate(self, token: str) -> Principal:
        if not _TOKEN.fullmatch(token):
            raise Unauthorized("invalid Keystone token")
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._verified.get(digest)
        if cached is not None and cached[0] > self._clock.monotonic():
            return cached[1]
        body = await self._validate(token)
        principal = await self._principal(body)
        # Never trusted past its expiry; not cached at all when Keystone gives no readable expiry.
        expires_at = _expires_at(body.get("expires_at"))
        trusted_for = (
            0.0 if expires_at is None else min(self.cache_seconds, expires_at - self._clock.time())
        )
        if trusted_for > 0:
            if len(self._verified) >= _MAX_CACHED:
                self._verified.clear()
            self._verified[digest] = (self._clock.monotonic() + trusted_for, principal)
        else:
            self._verified.pop(digest, None)
        return principal

    async def _validate(self, token: str) -> dict[str, Any]:
        """Keystone's `token` object for a valid token."""
        headers = {
            "X-Auth-Token": self.service_token or token,
            "X-Subject-Token": token,
            "Accept": "application/json",
        }
        try:
            response = await self._http.get(self.tokens_url, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach Keystone at {self.tokens_url}: {type(exc).__name__}"
            ) from None
        status = response.status_code
        if status == 404 or (status == 401 and not self.service_token):
            raise Unauthorized("invalid Keystone token")
        if status == 401:  # the subject token would get 404: it is our service token that failed
            log.error("Keystone rejected Pratai's service token (HTTP 401)")
            raise Unavailable("Keystone rejected Pratai's service token")
        if status == 403:
            log.error("Keystone does not let Pratai validate tokens (HTTP 403)")
            raise Unavailable("Keystone does not allow Pratai to validate tokens")
        if status != 200:
            raise Unavailable(f"Keystone answered HTTP {status} to a token validation")
        try:
            data = response.json()
        except ValueError:
            data = None
        body = data.get("token") if isinstance(data, dict) else None
        if not isinstance(body, dict):
            raise Unavailable("Keystone's token validation answer has no token object")
        return body

    async def _principal(self, body: dict[str, Any]) -> Principal:
        user = body.get("user")
        user_id = user.get("id") if isinstance(user, dict) else None
        if not isinstance(user_id, str) or not user_id:
            raise Unauthorized("invalid Keystone token")
        scope = body.get("project")
        name = scope.get("name") if isinstance(scope, dict) else None
        if not isinstance(scope, dict) or not isinstance(name, str):
            raise Unauthorized(
                "the Keystone token is not scoped to a project: "
                "request a project-scoped token (OS_PROJECT_NAME)"
            )
        if self.domain is not None:
            domain = scope.get("domain")
            ids = (domain.get("id"), domain.get("name")) if isinstance(domain, dict) else ()
            if self.domain not in ids:
                raise Unauthorized("Keystone projects of this domain are not accepted here")
        role = self._role(body.get("roles"))
        try:
            check_name(name, "project")
        except InvalidName:
            raise Unauthorized(
                f"Keystone project {name!r} has no Pratai counterpart: Pratai project names are "
                "1-63 lowercase letters, digits, '-' or '_'"
            ) from None
        project = await self._project(name)
        return Principal(key_id=f"keystone:{user_id}", project=project, role=role, user_id=user_id)

    def _role(self, roles: Any) -> Role:
        mapped = [
            self.role_map[entry["name"].lower()]
            for entry in (roles if isinstance(roles, list) else [])
            if isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and entry["name"].lower() in self.role_map
        ]
        if not mapped:
            raise Unauthorized("no Pratai role in this project")
        return max(mapped, key=RANK.__getitem__)

    async def _project(self, name: str) -> Project:
        project = await self.store.get_project_by_name(name)
        if project is not None:
            return project
        project = Project(id=new_id(), name=name)
        try:
            await self.store.create_project(project)
        except Conflict:  # created meanwhile, by another request or process
            existing = await self.store.get_project_by_name(name)
            if existing is None:
                raise Unavailable(f"could not create project {name!r}") from None
            return existing
        log.info("created project %r for the Keystone project of that name", name)
        return project
