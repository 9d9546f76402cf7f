"""The in-process broker: the same delivery rules as the embedded one, without a file."""

from __future__ import annotations

import asyncio
import time

import pytest

from pratai.broker.base import Delivery
from pratai.broker.memory import MemoryBroker

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def _next(gen, timeout: float = 2.0) -> Delivery:
    async with asyncio.timeout(timeout):
        return await anext(gen)


async def test_publish_consume_ack_and_dedupe() -> None:
    broker = MemoryBroker()
    await broker.open()
    await broker.publish("q", b"one", message_id="a")
    await broker.publish("q", b"again", message_id="a")  # still queued: ignored
    await broker.publish("q", b"two", message_id="b")
    gen = broker.consume("q")
    first, second = await _next(gen), await _next(gen)
    assert [(first.id, first.body), (second.id, second.body)] == [("a", b"one"), ("b", b"two")]
    await broker.ack(first)
    await broker.publish("q", b"new life", message_id="a")  # acked: a new message
    third = await _next(gen)
    assert (third.id, third.body, third.attempts) == ("a", b"new life", 1)
    await broker.close()


async def test_nack_with_delay_and_lease_expiry_redeliver() -> None:
    broker = MemoryBroker()
    await broker.open()
    await broker.publish("q", b"x", message_id="m")
    gen = broker.consume("q", lease_s=0.2)
    delivery = await _next(gen)
    started = time.monotonic()
    await broker.nack(delivery, delay_s=0.15)
    again = await _next(gen)
    assert again.id == "m" and again.attempts == 2 and time.monotonic() - started >= 0.14
    # not acked: after its lease it comes back
    late = await _next(gen)
    assert late.id == "m" and late.attempts == 3
    await broker.close()


async def test_two_consumers_never_share_a_message() -> None:
    broker = MemoryBroker()
    await broker.open()
    seen: list[str] = []

    async def consumer() -> None:
        async for delivery in broker.consume("q"):
            seen.append(delivery.id)
            await asyncio.sleep(0)
            await broker.ack(delivery)

    tasks = [asyncio.create_task(consumer()) for _ in range(4)]
    for n in range(200):
        await broker.publish("q", b"", message_id=str(n))
    async with asyncio.timeout(5):
        while len(seen) < 200:
            await asyncio.sleep(0.01)
    await broker.close()
    for task in tasks:
        task.cancel()
    assert sorted(seen, key=int) == [str(n) for n in range(200)]
