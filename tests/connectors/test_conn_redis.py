"""The redis stream connector against the real server (shared 6379; a private one to restart)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from pratai.connectors.redis import RedisStreamConnector
from tests.connectors.support import (
    Collector,
    PrivateServer,
    free_port,
    require_binary,
    running,
)
from tests.helpers import wait_for_async

REDIS_URL = os.environ.get("PRATAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest_asyncio.fixture(loop_scope="session")
async def stream() -> AsyncIterator[str]:
    name = f"clicks-{uuid.uuid4().hex[:8]}"
    yield name
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.delete(name)
    await client.aclose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateServer]:
    binary = require_binary("redis-server", "/usr/bin/redis-server")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    server = PrivateServer([*argv, "no", "--dir", str(tmp_path)], port, tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


async def xadd(url: str, stream: str, *entries: dict[str, str]) -> list[str]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return [str(await client.xadd(stream, dict[Any, Any](e))) for e in entries]
    finally:
        await client.aclose()


async def test_entries_arrive_in_order_and_are_acked(stream: str) -> None:
    connector = RedisStreamConnector(REDIS_URL, stream)
    got = Collector()
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.connected, what="connected")
        ids = await xadd(
            REDIS_URL,
            stream,
            {"data": json.dumps({"page": "/a", "n": 1})},
            {"data": "not json"},
            {"user": "u1", "page": "/b"},
        )
        await wait_for_async(lambda: len(got.items) == 3, what="3 entries")
        assert got.data == [
            {"data": {"page": "/a", "n": 1}},
            {"data": "not json"},
            {"user": "u1", "page": "/b"},
        ]
        assert [i.id for i in got.items] == ids
        assert all(i.type == "redis.stream.entry" and i.subject == stream for i in got.items)
        assert connector.status.forwarded == 3
        assert connector.status.connected is True
        client = aioredis.Redis.from_url(REDIS_URL)
        pending = await client.xpending(stream, "pratai")
        await client.aclose()
        assert pending["pending"] == 0


async def test_emit_failure_and_pending_entries_are_not_lost(stream: str) -> None:
    got = Collector(fail=1)
    connector = RedisStreamConnector(REDIS_URL, stream)
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.connected, what="connected")
        await xadd(REDIS_URL, stream, {"n": "1"})
        await wait_for_async(lambda: len(got.items) == 1, what="entry after a failed emit")
        assert got.calls == 2
        assert "emit failed" in (connector.status.last_error or "")
    # Read but never acked (the connector stops in the middle of emit): re-read on restart.
    stuck = Collector(block_first=True)
    connector = RedisStreamConnector(REDIS_URL, stream)
    async with running(connector, stuck):
        await xadd(REDIS_URL, stream, {"n": "2"})
        await wait_for_async(stuck.blocked.is_set, what="emit in progress")
    await xadd(REDIS_URL, stream, {"n": "3"})  # while no connector runs
    connector = RedisStreamConnector(REDIS_URL, stream)
    async with running(connector, got):
        await wait_for_async(lambda: len(got.items) == 3, what="pending and new entries")
    assert [d["n"] for d in got.data] == ["1", "2", "3"]


async def test_server_restart(private_redis: PrivateServer) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0"
    connector = RedisStreamConnector(url, "clicks")
    got = Collector()
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.connected, what="connected")
        await xadd(url, "clicks", {"n": "1"})
        await wait_for_async(lambda: len(got.items) == 1, what="first entry")
        private_redis.stop()
        await wait_for_async(lambda: not connector.status.connected, what="disconnected")
        await wait_for_async(lambda: connector.status.last_error is not None, what="an error")
        private_redis.start()  # no persistence: the stream and group are gone
        await xadd(url, "clicks", {"n": "2"}, {"n": "3"})
        await wait_for_async(lambda: len(got.items) == 3, what="entries after the restart")
        assert connector.status.connected is True
        assert connector.status.forwarded == 3
    assert [d["n"] for d in got.data] == ["1", "2", "3"]
