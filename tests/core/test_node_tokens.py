"""Node tokens: who may manage them, and which token strings verify, in this process and after
a revoke in another one (two `NodeTokens` over one store, a clock the test moves)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from pratai.core.models import Project, Role, new_id
from pratai.core.node_tokens import NodeTokens
from pratai.core.tenants import Principal
from pratai.errors import Forbidden, InvalidInput, NotFound
from pratai.store.memory import MemoryStore
from tests.helpers import Clock

DEFAULT = Project(id=new_id(), name="default")
PLATFORM_ADMIN = Principal(key_id="pk_admin", project=DEFAULT, role=Role.ADMIN)


@pytest_asyncio.fixture(loop_scope="function")
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    await s.open()
    yield s
    await s.close()


async def test_a_token_is_its_id_and_a_secret_and_only_a_hash_is_stored(
    store: MemoryStore,
) -> None:
    tokens = NodeTokens(store)
    stored, token = await tokens.create(PLATFORM_ADMIN, "rack-1")
    token_id, _, secret = token.partition(".")
    assert token_id == stored.id and token_id.startswith("nt_") and len(token_id) == 3 + 16
    assert len(secret) >= 40
    kept = await store.get_node_token(stored.id)
    assert kept is not None and kept.name == "rack-1" and kept.revoked_at is None
    assert secret not in repr(kept)
    assert await tokens.verify(token) == kept
    assert [t.id for t in await tokens.list(PLATFORM_ADMIN)] == [stored.id]


async def test_malformed_unknown_and_wrong_tokens_do_not_verify(store: MemoryStore) -> None:
    tokens = NodeTokens(store)
    _, token = await tokens.create(PLATFORM_ADMIN, "rack-1")
    token_id, _, secret = token.partition(".")
    for wrong in (
        "",
        "garbage",
        token_id,
        f"{token_id}.",
        f".{secret}",
        f"{token_id}.{secret}x",
        f"{token_id}.{secrets.token_urlsafe(32)}",
        f"nt_0000000000000000.{secret}",
    ):
        assert await tokens.verify(wrong) is None, wrong
    assert await tokens.verify(token) is not None


async def test_only_platform_admins_manage_node_tokens(store: MemoryStore) -> None:
    tokens = NodeTokens(store)
    stored, _ = await tokens.create(PLATFORM_ADMIN, "rack-1")
    acme = Project(id=new_id(), name="acme")
    others = [
        Principal(key_id="pk_dev", project=DEFAULT, role=Role.DEVELOPER),
        Principal(key_id="pk_acme", project=acme, role=Role.ADMIN),
    ]
    for who in others:
        for attempt in (
            tokens.create(who, "mine"),
            tokens.list(who),
            tokens.revoke(who, stored.id),
        ):
            with pytest.raises(Forbidden, match="every project's work and secrets"):
                await attempt
    assert [(t.id, t.revoked_at) for t in await store.list_node_tokens()] == [(stored.id, None)]


async def test_names_are_one_line_of_at_most_255_characters(store: MemoryStore) -> None:
    tokens = NodeTokens(store)
    for bad in ("", "two\nlines", "tab\there", "x" * 256):
        with pytest.raises(InvalidInput, match="node token name"):
            await tokens.create(PLATFORM_ADMIN, bad)
    assert await store.list_node_tokens() == []
    stored, _ = await tokens.create(PLATFORM_ADMIN, "Rack 2 (spare) — ü" + "x" * 237)
    assert len(stored.name) == 255


async def test_a_revoke_applies_here_at_once_and_elsewhere_within_seconds(
    store: MemoryStore,
) -> None:
    clock = Clock()
    here, elsewhere = NodeTokens(store, clock=clock), NodeTokens(store, clock=clock)
    first, first_token = await here.create(PLATFORM_ADMIN, "rack-1")
    _, second_token = await here.create(PLATFORM_ADMIN, "rack-2")
    for tokens in (here, elsewhere):  # both processes trust both tokens now
        assert await tokens.verify(first_token) is not None
        assert await tokens.verify(second_token) is not None

    await here.revoke(PLATFORM_ADMIN, first.id)
    assert await here.verify(first_token) is None  # the revoking process: at once
    assert await elsewhere.verify(first_token) is not None  # another: its cache, for now
    clock.advance(5.1)
    assert await elsewhere.verify(first_token) is None
    assert await elsewhere.verify(second_token) is not None  # the other token is untouched

    await here.revoke(PLATFORM_ADMIN, first.id)  # again: nothing changes
    kept = await store.get_node_token(first.id)
    assert kept is not None and kept.revoked_at is not None
    with pytest.raises(NotFound, match="nt_missing"):
        await here.revoke(PLATFORM_ADMIN, "nt_missing")
