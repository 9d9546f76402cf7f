"""The Keystone backend against a recorded token-validation contract.

A real Keystone needs a full service setup (database, fernet keys, bootstrap), so these tests run
against a small fake Keystone on a loopback port that implements the two calls Pratai makes, with
bodies shaped as in Keystone's v3 API reference (api-ref/source/v3/samples/admin/
auth-password-project-scoped-response.json and auth-password-unscoped-response.json):

- POST /v3/auth/tokens, password authentication -> 201, the token in X-Subject-Token;
- GET /v3/auth/tokens, X-Auth-Token must be a valid token, X-Subject-Token the one to validate
  -> 200 and the token body, or 404 for an unknown or expired subject token, 401 for a bad
  X-Auth-Token.

The store is a real SqlStore on SQLite.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio

from pratai.auth import ChainAuthenticator
from pratai.auth.keystone import Clock, KeystoneAuthenticator
from pratai.core.models import Project, Role, new_id
from pratai.core.ports import Store
from pratai.core.tenants import Principal, Tenants
from pratai.credentials import keystone_token
from pratai.errors import ApiError, Unauthorized, Unavailable
from pratai.keystone_api import tokens_url
from pratai.store.sql import SqlStore

pytestmark = pytest.mark.asyncio(loop_scope="function")

PASSWORD = "correct-horse-Battery-9"
DEFAULT_DOMAIN = {"id": "default", "name": "Default"}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SteppedClock:
    """Time that moves only when told: a test's `advance` instead of a sleep."""

    def __init__(self) -> None:
        self._wall, self._monotonic = time.time(), time.monotonic()

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._monotonic += seconds


class FakeKeystone:
    """Keystone's token API, in memory: users, role assignments, issued tokens. `clock` says
    when tokens are issued and when they expire."""

    def __init__(self) -> None:
        self.clock: Clock = time
        self.users = {
            "alice": {"id": "f0c3a1e5e2b44e7c9d6f2b8a1c3d5e7f", "password": PASSWORD},
            "svc": {"id": "5b2f9c0e1d3a4b6c8e7f9a0b1c2d3e4f", "password": "svc-pass"},
        }
        self.assignments = {("alice", "demo"): ["member", "reader"], ("svc", "service"): ["admin"]}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.validations: Counter[str] = Counter()
        self.auth_headers: list[str] = []
        self.password_requests: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def issue(
        self,
        *,
        user: str = "alice",
        project: str | None = "demo",
        roles: list[str] | None = None,
        expires_in: float = 3600.0,
        domain: dict[str, str] | None = None,
    ) -> str:
        """A token as Keystone would issue it (project-scoped unless project is None)."""
        issued = self.clock.time()
        body: dict[str, Any] = {
            "methods": ["password"],
            "user": {
                "domain": dict(DEFAULT_DOMAIN),
                "id": self.users[user]["id"],
                "name": user,
                "password_expires_at": None,
            },
            "audit_ids": [secrets.token_urlsafe(16)],
            "expires_at": _iso(issued + expires_in),
            "issued_at": _iso(issued),
        }
        if project is not None:
            roles = self.assignments.get((user, project), []) if roles is None else roles
            body["roles"] = [{"id": secrets.token_hex(16), "name": name} for name in roles]
            body["project"] = {
                "domain": dict(domain or DEFAULT_DOMAIN),
                "id": secrets.token_hex(16),
                "name": project,
            }
            body["is_domain"] = False
            body["catalog"] = [
                {
                    "endpoints": [
                        {
                            "region_id": "RegionOne",
                            "url": self.url + "/v3",
                            "region": "RegionOne",
                            "interface": "public",
                            "id": secrets.token_hex(16),
                        }
                    ],
                    "type": "identity",
                    "id": secrets.token_hex(16),
                    "name": "keystone",
                }
            ]
        token = "gAAAAAB" + secrets.token_urlsafe(120)
        self.tokens[token] = body
        return token

    def _valid(self, token: str | None) -> dict[str, Any] | None:
        body = self.tokens.get(token or "")
        if body is None:
            return None
        expires = datetime.fromisoformat(body["expires_at"]).timestamp()
        return body if expires > self.clock.time() else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, title: str, message: str) -> None:
                self._reply(status, {"error": {"code": status, "message": message, "title": title}})

            def do_GET(self) -> None:
                if self.path != "/v3/auth/tokens":
                    return self._error(404, "Not Found", "The resource could not be found.")
                auth = self.headers.get("X-Auth-Token")
                subject = self.headers.get("X-Subject-Token") or ""
                fake.auth_headers.append(auth or "")
                fake.validations[subject] += 1
                if fake._valid(auth) is None:
                    return self._error(
                        401, "Unauthorized", "The request you have made requires authentication."
                    )
                body = fake._valid(subject)
                if body is None:
                    return self._error(
                        404,
                        "Not Found",
                        f"Could not find token: {subject[:8]}...",
                    )
                self._reply(200, {"token": body}, {"X-Subject-Token": subject})

            def do_POST(self) -> None:
                if self.path != "/v3/auth/tokens":
                    return self._error(404, "Not Found", "The resource could not be found.")
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length))
                fake.password_requests.append(request)
                identity = request["auth"]["identity"]
                user = identity["password"]["user"]
                known = fake.users.get(user["name"])
                scope = request["auth"].get("scope", {}).get("project", {})
                roles = fake.assignments.get((user["name"], scope.get("name")), [])
                if (
                    identity["methods"] != ["password"]
                    or known is None
                    or user.get("domain") != {"name": "Default"}
                    or known["password"] != user["password"]
                    or scope.get("domain") != {"name": "Default"}
                    or not roles
                ):
                    return self._error(
                        401, "Unauthorized", "The request you have made requires authentication."
                    )
                token = fake.issue(user=user["name"], project=scope["name"])
                self._reply(201, {"token": fake.tokens[token]}, {"X-Subject-Token": token})

        return Handler


@pytest.fixture(scope="module")
def keystone() -> Iterator[FakeKeystone]:
    fake = FakeKeystone()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def clock(keystone: FakeKeystone) -> Iterator[SteppedClock]:
    """The test's time, the fake Keystone's too; pass it to the authenticator as `clock`."""
    keystone.clock = stepped = SteppedClock()
    yield stepped
    keystone.clock = time


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest_asyncio.fixture(loop_scope="function")
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    await s.open()
    yield s
    await s.close()


@pytest_asyncio.fixture(loop_scope="function")
async def auth(keystone: FakeKeystone, store: SqlStore) -> AsyncIterator[KeystoneAuthenticator]:
    authenticator = KeystoneAuthenticator(keystone.url, store)
    yield authenticator
    await authenticator.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- validation and mapping -------------------------------------------------------------------


async def test_valid_token_maps_project_created_on_first_sight(
    keystone: FakeKeystone, store: SqlStore, auth: KeystoneAuthenticator
) -> None:
    assert await store.get_project_by_name("demo") is None
    token = keystone.issue(roles=["member"])
    who = await auth.authenticate(token)
    alice = keystone.users["alice"]["id"]
    assert who.key_id == f"keystone:{alice}"
    assert who.user_id == alice
    assert who.role == Role.DEVELOPER
    assert who.project.name == "demo"
    assert not who.platform_admin
    stored = await store.get_project_by_name("demo")
    assert stored is not None and stored.id == who.project.id
    # the token validated itself: X-Auth-Token was the token
    assert keystone.auth_headers[-1] == token
    # a second user of the same project gets the same Pratai project
    again = await auth.authenticate(keystone.issue(roles=["reader"]))
    assert again.project.id == who.project.id and again.role == Role.VIEWER


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (["reader", "member", "admin"], Role.ADMIN),
        (["reader", "_member_"], Role.DEVELOPER),
        (["Member", "reader"], Role.DEVELOPER),
        (["reader", "invoker"], Role.INVOKER),
        (["reader", "heat_stack_owner"], Role.VIEWER),
    ],
)
async def test_strongest_mapped_role_wins(
    keystone: FakeKeystone, auth: KeystoneAuthenticator, roles: list[str], expected: Role
) -> None:
    assert (await auth.authenticate(keystone.issue(roles=roles))).role == expected


async def test_custom_role_map_replaces_the_default(
    keystone: FakeKeystone, store: SqlStore
) -> None:
    auth = KeystoneAuthenticator(keystone.url, store, role_map={"Pratai-Deployer": Role.DEVELOPER})
    try:
        token = keystone.issue(roles=["pratai-deployer"])
        assert (await auth.authenticate(token)).role == Role.DEVELOPER
        with pytest.raises(Unauthorized, match="no Pratai role"):
            await auth.authenticate(keystone.issue(roles=["admin"]))
    finally:
        await auth.aclose()


async def test_unknown_and_malformed_tokens_are_unauthorized(
    keystone: FakeKeystone, auth: KeystoneAuthenticator
) -> None:
    unknown = "gAAAAAB" + secrets.token_urlsafe(120)
    with pytest.raises(Unauthorized, match="invalid Keystone token"):
        await auth.authenticate(unknown)
    assert keystone.validations[unknown] == 1
    for bad in ("", "two words", "tok\r\nX-Injected: 1", "é" * 10):
        with pytest.raises(Unauthorized, match="invalid Keystone token"):
            await auth.authenticate(bad)


async def test_unknown_subject_with_service_token_is_unauthorized(
    keystone: FakeKeystone, store: SqlStore
) -> None:
    service = keystone.issue(user="svc", project="service")
    auth = KeystoneAuthenticator(keystone.url, store, service_token=service)
    try:
        token = keystone.issue(roles=["admin"])
        assert (await auth.authenticate(token)).role == Role.ADMIN
        assert keystone.auth_headers[-1] == service
        with pytest.raises(Unauthorized, match="invalid Keystone token"):
            await auth.authenticate("gAAAAAB" + secrets.token_urlsafe(120))
    finally:
        await auth.aclose()


async def test_a_rejected_service_token_is_unavailable_not_the_users_fault(
    keystone: FakeKeystone, store: SqlStore
) -> None:
    auth = KeystoneAuthenticator(keystone.url, store, service_token="gAAAAAB-expired-or-wrong")
    try:
        with pytest.raises(Unavailable, match="service token"):
            await auth.authenticate(keystone.issue())
    finally:
        await auth.aclose()


async def test_unscoped_token_is_unauthorized(
    keystone: FakeKeystone, store: SqlStore, auth: KeystoneAuthenticator
) -> None:
    with pytest.raises(Unauthorized, match="not scoped to a project"):
        await auth.authenticate(keystone.issue(project=None))
    assert await store.list_projects() == []


async def test_no_mapped_role_is_unauthorized_and_creates_nothing(
    keystone: FakeKeystone, store: SqlStore, auth: KeystoneAuthenticator
) -> None:
    for roles in ([], ["heat_stack_owner", "load-balancer_observer"]):
        with pytest.raises(Unauthorized, match="no Pratai role in this project"):
            await auth.authenticate(keystone.issue(project="elsewhere", roles=roles))
    assert await store.get_project_by_name("elsewhere") is None


async def test_project_names_pratai_cannot_use_are_refused(
    keystone: FakeKeystone, store: SqlStore, auth: KeystoneAuthenticator
) -> None:
    with pytest.raises(Unauthorized, match="no Pratai counterpart"):
        await auth.authenticate(keystone.issue(project="Demo Project", roles=["admin"]))
    assert await store.list_projects() == []


async def test_domain_restriction(keystone: FakeKeystone, store: SqlStore) -> None:
    other = {"id": "4f0e1f0b2e8c4b7e9a6d5c3b2a190807", "name": "partners"}
    token = keystone.issue(roles=["member"], domain=other)
    only_default = KeystoneAuthenticator(keystone.url, store, domain="default")
    by_name = KeystoneAuthenticator(keystone.url, store, domain="partners")
    try:
        with pytest.raises(Unauthorized, match="domain"):
            await only_default.authenticate(token)
        assert (await only_default.authenticate(keystone.issue(roles=["member"]))).role
        assert (await by_name.authenticate(token)).project.name == "demo"
    finally:
        await only_default.aclose()
        await by_name.aclose()


async def test_keystone_down_is_unavailable(store: SqlStore) -> None:
    auth = KeystoneAuthenticator(f"http://127.0.0.1:{_free_port()}/v3/", store)
    try:
        with pytest.raises(Unavailable, match="cannot reach Keystone"):
            await auth.authenticate("gAAAAAB" + secrets.token_urlsafe(40))
    finally:
        await auth.aclose()


async def test_concurrent_first_sight_creates_one_project(
    keystone: FakeKeystone, store: SqlStore, auth: KeystoneAuthenticator
) -> None:
    tokens = [keystone.issue(project="burst", roles=["member"]) for _ in range(8)]
    principals = await asyncio.gather(*(auth.authenticate(t) for t in tokens))
    assert len({p.project.id for p in principals}) == 1
    assert [p.name for p in await store.list_projects()] == ["burst"]


class RacingStore:
    """Another process creates the project between our lookup and our insert."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_project_by_name(self, name: str) -> Project | None:
        if not self.raced:
            self.raced = True
            await self.inner.create_project(Project(id=new_id(), name=name))
            return None
        return await self.inner.get_project_by_name(name)


async def test_conflict_from_a_concurrent_create_is_tolerated(
    keystone: FakeKeystone, store: SqlStore
) -> None:
    racing = RacingStore(store)
    auth = KeystoneAuthenticator(keystone.url, cast(Store, racing))
    try:
        who = await auth.authenticate(keystone.issue(project="raced", roles=["member"]))
    finally:
        await auth.aclose()
    assert racing.raced
    stored = await store.get_project_by_name("raced")
    assert stored is not None and who.project.id == stored.id


# --- cache --------------------------------------------------------------------------------------


async def test_validated_tokens_are_cached(
    keystone: FakeKeystone, store: SqlStore, clock: SteppedClock
) -> None:
    auth = KeystoneAuthenticator(keystone.url, store, cache_seconds=30, clock=clock)
    try:
        token = keystone.issue(roles=["member"])
        first = await auth.authenticate(token)
        clock.advance(29)
        assert await auth.authenticate(token) == first
        assert keystone.validations[token] == 1
        clock.advance(2)
        assert await auth.authenticate(token) == first
        assert keystone.validations[token] == 2
        # failures are not cached
        unknown = "gAAAAAB" + secrets.token_urlsafe(40)
        for _ in range(2):
            with pytest.raises(Unauthorized):
                await auth.authenticate(unknown)
        assert keystone.validations[unknown] == 2
    finally:
        await auth.aclose()


async def test_cache_never_outlives_the_token(
    keystone: FakeKeystone, store: SqlStore, clock: SteppedClock
) -> None:
    auth = KeystoneAuthenticator(keystone.url, store, cache_seconds=30, clock=clock)
    try:
        token = keystone.issue(roles=["member"], expires_in=5)
        await auth.authenticate(token)
        clock.advance(4)
        await auth.authenticate(token)
        assert keystone.validations[token] == 1
        clock.advance(2)
        with pytest.raises(Unauthorized):  # Keystone: 404 for an expired token
            await auth.authenticate(token)
        assert keystone.validations[token] == 2
    finally:
        await auth.aclose()


async def test_a_given_http_client_is_used_and_left_open(
    keystone: FakeKeystone, store: SqlStore
) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        auth = KeystoneAuthenticator(keystone.url, store, http=http, cache_seconds=0)
        token = keystone.issue(roles=["member"])
        await auth.authenticate(token)
        await auth.aclose()
        await auth.authenticate(token)  # still usable: not ours to close
        assert keystone.validations[token] == 2


# --- the CLI side -------------------------------------------------------------------------------


def _os_env(keystone: FakeKeystone, **overrides: str) -> dict[str, str]:
    env = {
        "OS_AUTH_URL": keystone.url + "/v3",
        "OS_USERNAME": "alice",
        "OS_PASSWORD": PASSWORD,
        "OS_PROJECT_NAME": "demo",
        "PATH": "/usr/bin",
    }
    env.update(overrides)
    return env


async def test_keystone_token_end_to_end(
    keystone: FakeKeystone, auth: KeystoneAuthenticator
) -> None:
    token = keystone_token(_os_env(keystone))
    assert token is not None and token in keystone.tokens
    assert keystone.password_requests[-1] == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "alice", "domain": {"name": "Default"}, "password": PASSWORD}
                },
            },
            "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}},
        }
    }
    who = await auth.authenticate(token)
    assert who.project.name == "demo"
    assert who.role == Role.DEVELOPER  # member + reader
    assert who.user_id == keystone.users["alice"]["id"]


async def test_keystone_token_needs_all_four_variables(keystone: FakeKeystone) -> None:
    assert keystone_token({}) is None
    for name in ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"):
        env = _os_env(keystone)
        del env[name]
        assert keystone_token(env) is None


async def test_keystone_token_domain_variables(keystone: FakeKeystone) -> None:
    env = _os_env(keystone, OS_USER_DOMAIN_ID="default", OS_PROJECT_DOMAIN_NAME="Partners")
    with pytest.raises(ApiError):  # the fake knows alice in the Default domain only
        keystone_token(env)
    body = keystone.password_requests[-1]["auth"]
    assert body["identity"]["password"]["user"]["domain"] == {"id": "default"}
    assert body["scope"]["project"]["domain"] == {"name": "Partners"}


async def test_keystone_token_errors_never_show_the_password(keystone: FakeKeystone) -> None:
    with pytest.raises(ApiError) as refused:
        keystone_token(_os_env(keystone, OS_PASSWORD="wrong-" + PASSWORD))
    assert refused.value.status == 0
    assert "401" in refused.value.message and "'alice'" in refused.value.message
    assert "requires authentication" in refused.value.message
    assert PASSWORD not in str(refused.value)

    down = _os_env(keystone, OS_AUTH_URL=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(ApiError, match="cannot reach Keystone") as unreachable:
        keystone_token(down)
    assert unreachable.value.status == 0
    assert PASSWORD not in str(unreachable.value)
    assert unreachable.value.__cause__ is None and unreachable.value.__suppress_context__


async def test_tokens_url() -> None:
    for url in ("http://k:5000", "http://k:5000/", "http://k:5000/v3", "http://k:5000/v3/"):
        assert tokens_url(url) == "http://k:5000/v3/auth/tokens"
    assert tokens_url("https://cloud/identity/v3") == "https://cloud/identity/v3/auth/tokens"


# --- chaining with built-in keys ---------------------------------------------------------------


class Recorder:
    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.seen: list[str] = []

    async def authenticate(self, token: str) -> Principal:
        self.seen.append(token)
        return self.principal


async def test_chain_routes_builtin_keys_first_and_the_rest_second() -> None:
    project = Project(id=new_id(), name="p")
    first = Recorder(Principal("pk_a", project, Role.ADMIN))
    second = Recorder(Principal("keystone:u", project, Role.VIEWER, "u"))
    chain = ChainAuthenticator(first, second)
    assert (await chain.authenticate("pk_0123.secret")).key_id == "pk_a"
    assert (await chain.authenticate("gAAAAABxyz")).key_id == "keystone:u"
    assert (await chain.authenticate("PK_upper")).key_id == "keystone:u"
    assert first.seen == ["pk_0123.secret"]
    assert second.seen == ["gAAAAABxyz", "PK_upper"]


async def test_chain_with_real_keys_and_keystone(
    keystone: FakeKeystone, store: SqlStore, auth: KeystoneAuthenticator
) -> None:
    tenants = Tenants(store)
    default = await tenants.ensure_project()
    key = await tenants.create_key(default, Role.ADMIN, "bootstrap")
    chain = ChainAuthenticator(tenants, auth)
    assert (await chain.authenticate(key)).platform_admin
    with pytest.raises(Unauthorized, match="invalid API key"):  # never sent to Keystone
        await chain.authenticate("pk_" + secrets.token_hex(8) + ".wrong")
    token = keystone.issue(roles=["invoker"])
    who = await chain.authenticate(token)
    assert who.role == Role.INVOKER and who.key_id.startswith("keystone:")
    assert keystone.validations[token] == 1
