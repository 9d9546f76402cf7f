"""/v1/node-tokens in-process: the app of `Platform.assemble` driven through httpx's ASGI
transport. Only admins of the default project manage node tokens; a token is shown once, never
listed, and a revoked one no longer verifies."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from pratai.core.models import Role
from pratai.server import Platform
from pratai.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="function")

REFUSED = (
    "only admins of the default project manage node tokens: a node token lets a machine receive"
    " every project's work and secrets"
)


@dataclass
class Api:
    platform: Platform
    client: httpx.AsyncClient
    admin: str  # an admin key of the default project: a platform admin

    async def request(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return await self.client.request(method, path, headers=headers, **kw)

    async def create(self, name: str = "rack-1", token: str | None = None) -> httpx.Response:
        return await self.request(
            "POST", "/v1/node-tokens", token or self.admin, json={"name": name}
        )


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings.from_env({"PRATAI_HOME": str(tmp_path / "home")})
    yield s
    if not s.sandbox_dir.is_relative_to(s.home):
        shutil.rmtree(s.sandbox_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="function")
async def api(settings: Settings, assemble: Callable[[Settings], Platform]) -> AsyncIterator[Api]:
    platform = assemble(settings)
    admin = await platform.start()  # ASGITransport runs no lifespan
    try:
        assert admin is not None
        transport = httpx.ASGITransport(app=platform.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://pratai.test") as client:
            yield Api(platform, client, admin)
    finally:
        await platform.close()


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    message: str = body["message"]
    return message


async def test_a_platform_admin_creates_lists_and_revokes_node_tokens(api: Api) -> None:
    created = await api.create("rack-1")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "rack-1" and body["id"].startswith("nt_")
    assert body["revoked_at"] is None and isinstance(body["created_at"], float)
    token = body["token"]
    token_id, _, secret = token.partition(".")
    assert token_id == body["id"] and secret
    verified = await api.platform.services.node_tokens.verify(token)
    assert verified is not None and verified.id == token_id

    listed = await api.request("GET", "/v1/node-tokens", api.admin)
    assert listed.status_code == 200
    assert [t for t in listed.json() if t["id"] == token_id] == [
        {"id": token_id, "name": "rack-1", "created_at": body["created_at"], "revoked_at": None}
    ]
    assert secret not in listed.text and verified.secret_hash not in listed.text

    revoked = await api.request("DELETE", f"/v1/node-tokens/{token_id}", api.admin)
    assert revoked.status_code == 204 and revoked.content == b""
    assert await api.platform.services.node_tokens.verify(token) is None
    shown = (await api.request("GET", "/v1/node-tokens", api.admin)).json()
    assert [t["revoked_at"] is not None for t in shown if t["id"] == token_id] == [True]
    again = await api.request("DELETE", f"/v1/node-tokens/{token_id}", api.admin)
    assert again.status_code == 204  # revoking a revoked token changes nothing

    unknown = await api.request("DELETE", "/v1/node-tokens/nt_0000000000000000", api.admin)
    assert "nt_0000000000000000" in error_of(unknown, 404, "not_found")


async def test_a_developer_and_another_projects_admin_are_refused(api: Api) -> None:
    tenants = api.platform.services.tenants
    default = await tenants.ensure_project()
    developer = await tenants.create_key(default, Role.DEVELOPER)
    acme_admin = await tenants.create_key(await tenants.ensure_project("acme"), Role.ADMIN)
    token = (await api.create("rack-1")).json()

    for key in (developer, acme_admin):
        assert error_of(await api.create("mine", key), 403, "forbidden") == REFUSED
        listed = await api.request("GET", "/v1/node-tokens", key)
        assert error_of(listed, 403, "forbidden") == REFUSED
        revoke = await api.request("DELETE", f"/v1/node-tokens/{token['id']}", key)
        assert error_of(revoke, 403, "forbidden") == REFUSED
        unknown = await api.request("DELETE", "/v1/node-tokens/nt_0000000000000000", key)
        assert error_of(unknown, 403, "forbidden") == REFUSED  # not even which ids exist
    listed = (await api.request("GET", "/v1/node-tokens", api.admin)).json()
    assert [(t["name"], t["revoked_at"]) for t in listed] == [("rack-1", None)]
    assert await api.platform.services.node_tokens.verify(token["token"]) is not None


async def test_a_name_is_one_line_of_1_to_255_characters(api: Api) -> None:
    for bad in ("", "two\nlines", "x" * 256):
        message = error_of(await api.create(bad), 400, "invalid_input")
        assert "node token name" in message
    for body in ({}, {"name": 7}, {"name": None}):
        answer = await api.request("POST", "/v1/node-tokens", api.admin, json=body)
        assert "name" in error_of(answer, 400, "invalid_input")
    assert (await api.request("GET", "/v1/node-tokens", api.admin)).json() == []
    assert (await api.create("Rack 2 (spare)")).status_code == 201


async def test_pratai_serve_lists_its_own_node_and_cannot_drain_it(api: Api) -> None:
    listed = await api.request("GET", "/v1/nodes", api.admin)
    assert listed.status_code == 200, listed.text
    (node,) = listed.json()
    assert (node["name"], node["state"], node["busy"]) == ("local", "ready", 0)
    assert node["memory"]["budget_mb"] == api.platform.settings.node_memory_mb
    drained = await api.request("POST", "/v1/nodes/local/drain", api.admin)
    assert "drain the nodes of a cluster" in error_of(drained, 409, "conflict")

    tenants = api.platform.services.tenants
    acme_admin = await tenants.create_key(await tenants.ensure_project("acme"), Role.ADMIN)
    refused = await api.request("GET", "/v1/nodes", acme_admin)
    assert refused.status_code == 403
