"""The node's Worker against the in-memory broker: ack when the handler is done, nack with its
delay when it asks to run again, nack with a backoff when it raises, cancel on stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from pratai.broker import Delivery
from pratai.broker.memory import MemoryBroker
from pratai.node.pool import Pools
from pratai.node.worker import Handler, Worker

pytestmark = pytest.mark.asyncio(loop_scope="function")

QUEUE = "work"


class SpyBroker(MemoryBroker):
    """The in-memory broker, keeping each ack and nack (with its delay) in order."""

    def __init__(self) -> None:
        super().__init__()
        self.settled: list[tuple[str, bytes, float | None]] = []
        self.changed = asyncio.Event()

    async def ack(self, delivery: Delivery) -> None:
        await super().ack(delivery)
        self.settled.append(("ack", delivery.body, None))
        self.changed.set()

    async def nack(self, delivery: Delivery, *, delay_s: float = 0.0) -> None:
        await super().nack(delivery, delay_s=delay_s)
        self.settled.append(("nack", delivery.body, delay_s))
        self.changed.set()

    async def settled_at_least(self, count: int) -> list[tuple[str, bytes, float | None]]:
        async with asyncio.timeout(10):
            while len(self.settled) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.settled


@pytest_asyncio.fixture(loop_scope="function")
async def broker() -> AsyncIterator[SpyBroker]:
    spy = SpyBroker()
    await spy.open()
    yield spy
    await spy.close()


async def started(broker: SpyBroker, handler: Handler) -> Worker:
    worker = Worker(QUEUE, lease_s=60.0, what="thing", pools=Pools(idle_timeout=60.0))
    worker.start(broker, handler, consumers=2)
    return worker


async def test_done_is_acked_and_the_handler_gets_the_body(broker: SpyBroker) -> None:
    seen: list[str] = []

    async def handler(name: str) -> None:
        seen.append(name)

    worker = await started(broker, handler)
    try:
        await broker.publish(QUEUE, b"abc")
        assert await broker.settled_at_least(1) == [("ack", b"abc", None)]
        assert seen == ["abc"]
    finally:
        await worker.stop()


async def test_asking_again_nacks_with_that_delay_and_it_comes_again(broker: SpyBroker) -> None:
    attempts: list[str] = []

    async def handler(name: str) -> float | None:
        attempts.append(name)
        return 0.01 if len(attempts) == 1 else None

    worker = await started(broker, handler)
    try:
        await broker.publish(QUEUE, b"retry-me")
        settled = await broker.settled_at_least(2)
        assert settled == [("nack", b"retry-me", 0.01), ("ack", b"retry-me", None)]
        assert attempts == ["retry-me", "retry-me"]
    finally:
        await worker.stop()


async def test_a_raising_handler_is_nacked_with_a_backoff(broker: SpyBroker) -> None:
    async def handler(name: str) -> None:
        raise RuntimeError("store is down")

    worker = await started(broker, handler)
    try:
        await broker.publish(QUEUE, b"x")
        assert await broker.settled_at_least(1) == [("nack", b"x", 2.0)]  # 2 ** attempt 1
    finally:
        await worker.stop()


async def test_stop_cancels_a_running_handler_and_settles_nothing(broker: SpyBroker) -> None:
    running, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(name: str) -> None:
        running.set()
        try:
            await asyncio.Event().wait()  # never set: runs until cancelled
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = await started(broker, handler)
    await broker.publish(QUEUE, b"long")
    async with asyncio.timeout(10):
        await running.wait()
    async with asyncio.timeout(10):
        await worker.stop()
    assert cancelled.is_set()
    assert broker.settled == []  # not acked: the broker delivers it again
