"""The AMQP connector against the machine's RabbitMQ.

The restart test stops and starts the RabbitMQ *app* of the shared node (`rabbitmqctl stop_app`
/ `start_app`: a private node is heavy), and starts it again even when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest_asyncio
from aio_pika.exceptions import ChannelPreconditionFailed

from pratai.connectors.amqp import AmqpConnector
from tests.connectors.support import Collector, running, wait_port
from tests.helpers import wait_for_async

AMQP_URL = os.environ.get("PRATAI_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest_asyncio.fixture(loop_scope="session")
async def queue_name() -> AsyncIterator[str]:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


async def publish(queue: str, *bodies: bytes, message_id: str | None = None) -> None:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        for body in bodies:
            message = aio_pika.Message(
                body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id
            )
            await channel.default_exchange.publish(message, routing_key=queue)


async def test_declares_durable_queue_and_forwards_in_order(queue_name: str) -> None:
    connector = AmqpConnector(AMQP_URL, queue_name)
    got = Collector()
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.connected, what="connected")
        # The queue now exists and is durable: declaring it non-durable is refused.
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
        async with connection:
            channel = await connection.channel()
            try:
                await channel.declare_queue(queue_name, durable=False)
                raise AssertionError("the queue was not declared durable")
            except ChannelPreconditionFailed:
                pass
        await publish(queue_name, json.dumps({"job": 1}).encode(), b"text", b"\xff")
        await publish(queue_name, b"[1, 2]", message_id="msg-7")
        await publish(queue_name, *[str(n).encode() for n in range(100)])
        await wait_for_async(lambda: len(got.items) == 104, what="104 messages")
        assert got.data[:4] == [{"job": 1}, "text", b"\xff", [1, 2]]
        assert got.data[4:] == list(range(100))
        assert got.items[3].id == "msg-7"
        assert all(i.subject == queue_name and i.type == "amqp.message" for i in got.items)
        assert connector.status.forwarded == 104
        assert connector.status.connected is True
        assert connector.status.last_error is None


async def test_emit_failure_and_stopped_connector(queue_name: str) -> None:
    got = Collector(fail=1)
    connector = AmqpConnector(AMQP_URL, queue_name)
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.connected, what="connected")
        await publish(queue_name, b"1", b"2")
        await wait_for_async(lambda: len(got.items) == 2, what="messages after a failed emit")
        assert got.calls == 3
        assert "emit failed" in (connector.status.last_error or "")
    # Received but not forwarded (stopped inside emit): never acked, so delivered again.
    stuck = Collector(block_first=True)
    connector = AmqpConnector(AMQP_URL, queue_name)
    async with running(connector, stuck):
        await publish(queue_name, b"3")
        await wait_for_async(stuck.blocked.is_set, what="emit in progress")
    await publish(queue_name, b"4")  # while no connector runs: the durable queue keeps it
    connector = AmqpConnector(AMQP_URL, queue_name)
    async with running(connector, got):
        await wait_for_async(lambda: len(got.items) == 4, what="kept messages")
    assert got.data == [1, 2, 3, 4]


def rabbitmqctl(*args: str) -> None:
    binary = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([binary, "-q", *args], check=True, capture_output=True, timeout=60)


async def test_server_restart(queue_name: str) -> None:
    connector = AmqpConnector(AMQP_URL, queue_name)
    got = Collector()
    try:
        async with running(connector, got):
            await wait_for_async(lambda: connector.status.connected, what="connected")
            await publish(queue_name, b"1")
            await wait_for_async(lambda: len(got.items) == 1, what="first message")
            rabbitmqctl("stop_app")
            await wait_for_async(lambda: not connector.status.connected, what="disconnected")
            await wait_for_async(lambda: connector.status.last_error is not None, what="an error")
            error = connector.status.last_error or ""
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")
            wait_port(5672)
            await publish(queue_name, b"2", b"3")
            await wait_for_async(lambda: len(got.items) == 3, what="messages after the restart")
            assert connector.status.connected is True
            assert connector.status.forwarded == 3
        assert got.data == [1, 2, 3]
        assert "guest:guest" not in error
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
