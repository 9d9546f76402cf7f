"""The NATS connector against the real server (shared 4222; a private nats-server to restart)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from pratai.connectors.nats import NatsConnector
from tests.connectors.support import (
    Collector,
    PrivateServer,
    free_port,
    require_binary,
    running,
)
from tests.helpers import wait_for_async

NATS_URL = os.environ.get("PRATAI_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateServer]:
    binary = require_binary("nats-server", "/usr/sbin/nats-server")
    port = free_port()
    server = PrivateServer([binary, "-a", "127.0.0.1", "-p", str(port)], port, tmp_path / "log")
    server.start()
    yield server
    server.stop()


async def publish(url: str, *messages: tuple[str, bytes], headers: dict[str, str] | None = None):
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5)
    try:
        for subject, payload in messages:
            await nc.publish(subject, payload, headers=headers)
        await nc.flush()
    finally:
        await nc.close()


async def test_wildcard_subject_in_order() -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    connector = NatsConnector(NATS_URL, f"{prefix}.orders.*")
    got = Collector()
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.connected, what="connected")
        assert connector.status.connected_at is not None
        await publish(
            NATS_URL,
            (f"{prefix}.orders.a", json.dumps({"n": 1}).encode()),
            (f"{prefix}.orders.b", b"plain text"),
            (f"{prefix}.orders.a.deep", b"not matched by *"),
            (f"{prefix}.other", b"not matched"),
            (f"{prefix}.orders.c", b"\xff\xfe"),
        )
        await publish(NATS_URL, (f"{prefix}.orders.d", b"{}"), headers={"Nats-Msg-Id": "m-1"})
        await wait_for_async(lambda: len(got.items) == 4, what="4 messages")
        assert got.data == [{"n": 1}, "plain text", b"\xff\xfe", {}]
        assert [i.subject for i in got.items] == [
            f"{prefix}.orders.a",
            f"{prefix}.orders.b",
            f"{prefix}.orders.c",
            f"{prefix}.orders.d",
        ]
        assert all(i.type == "nats.message" for i in got.items)
        assert got.items[3].id == "m-1"
        assert connector.status.forwarded == 4
        assert connector.status.connected is True
        assert connector.status.last_error is None
        many = [(f"{prefix}.orders.x", str(n).encode()) for n in range(200)]
        await publish(NATS_URL, *many)
        await wait_for_async(lambda: len(got.items) == 204, what="200 more")
        assert got.data[4:] == list(range(200))


async def test_emit_failure_does_not_lose_the_message() -> None:
    subject = f"t{uuid.uuid4().hex[:8]}.jobs"
    connector = NatsConnector(NATS_URL, subject)
    got = Collector(fail=2)
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.connected, what="connected")
        await publish(NATS_URL, (subject, b"1"), (subject, b"2"))
        await wait_for_async(lambda: len(got.items) == 2, what="both messages")
        assert got.data == [1, 2]
        assert got.calls == 4
        assert connector.status.forwarded == 2
        assert "emit failed" in (connector.status.last_error or "")


async def test_server_restart(private_nats: PrivateServer) -> None:
    url = f"nats://127.0.0.1:{private_nats.port}"
    connector = NatsConnector(url, "orders.>")
    got = Collector()
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.connected, what="connected")
        await publish(url, ("orders.1", b"1"))
        await wait_for_async(lambda: len(got.items) == 1, what="first message")
        private_nats.stop()
        await wait_for_async(lambda: not connector.status.connected, what="disconnected")
        await wait_for_async(lambda: connector.status.last_error is not None, what="an error")
        private_nats.start()
        # Core NATS keeps nothing for absent subscribers: publish once it is subscribed again.
        await wait_for_async(lambda: connector.status.connected, what="reconnected")
        await publish(url, ("orders.2", b"2"), ("orders.3.x", b"3"))
        await wait_for_async(lambda: len(got.items) == 3, what="messages after the restart")
        assert connector.status.forwarded == 3
    assert got.data == [1, 2, 3]
