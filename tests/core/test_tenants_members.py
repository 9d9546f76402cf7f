"""A project's users, as the console's users page lists them: derived from their active keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from pratai.core.models import Role, now
from pratai.core.tenants import Principal, Tenants
from pratai.store.memory import MemoryStore


@pytest_asyncio.fixture(loop_scope="function")
async def tenants() -> AsyncIterator[Tenants]:
    store = MemoryStore()
    await store.open()
    yield Tenants(store)
    await store.close()


async def test_members_are_users_with_an_active_key_in_the_project_at_their_highest_role(
    tenants: Tenants,
) -> None:
    default = await tenants.ensure_project()
    admin = Principal(key_id="pk_root", project=default, role=Role.ADMIN)
    other = await tenants.create_project(admin, "elsewhere")
    ada, _ = await tenants.create_user(admin, "ada", "default", Role.VIEWER)
    await tenants.create_key(default, Role.DEVELOPER, user_id=ada.id)
    bob, _ = await tenants.create_user(admin, "bob", "default", Role.INVOKER)
    await tenants.create_user(admin, "cyd", "elsewhere", Role.ADMIN)
    await tenants.create_key(default, Role.ADMIN, user_id=bob.id, expires_at=now() - 1)
    await tenants.create_key(default, Role.ADMIN)  # no user's
    members = await tenants.members(admin)
    assert [(m.name, m.role, m.active_keys, m.has_password) for m in members] == [
        ("ada", Role.DEVELOPER, 2, False),
        ("bob", Role.INVOKER, 1, False),
    ]
    theirs = Principal(key_id="pk_x", project=other, role=Role.ADMIN)
    assert [m.name for m in await tenants.members(theirs)] == ["cyd"]
    bobs_keys = [k for k in await tenants.keys(admin, None) if k.user_id == bob.id]
    for key in bobs_keys:
        await tenants.revoke(admin, key.id)
    assert [m.name for m in await tenants.members(admin)] == ["ada"]
