"""Taking deliveries in broker tests, and a JetStreamBroker on a stream of the test's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats

from pratai.broker import Broker, Delivery
from pratai.broker.nats import JetStreamBroker


async def next_delivery(b: Broker, queue: str, lease_s: float = 60.0) -> Delivery:
    """What a new consumer of `queue` gets first."""
    gen = b.consume(queue, lease_s=lease_s)
    try:
        async with asyncio.timeout(5):
            return await anext(gen)
    finally:
        await gen.aclose()  # type: ignore[attr-defined]


async def nothing_in(b: Broker, queue: str, lease_s: float = 60.0) -> None:
    """Nothing of `queue` can be delivered now: a probe published now comes out first (every
    broker delivers what is due in the order it became available)."""
    probe = await b.publish(queue, b"probe")
    got = await next_delivery(b, queue, lease_s)
    assert (got.id, got.body) == (probe, b"probe"), f"{got.body!r} could be delivered"
    await b.ack(got)


@asynccontextmanager
async def jetstream(
    servers: list[str], *, delete: bool = True, **options: Any
) -> AsyncIterator[JetStreamBroker]:
    """An open JetStreamBroker on a new stream, deleted afterwards unless the servers are the
    test's own."""
    name = uuid.uuid4().hex[:12]
    options = {"stream": f"T{name}", "prefix": f"t{name}", "retry_s": 30.0, **options}
    b = JetStreamBroker(servers, **options)
    await b.open()
    try:
        yield b
    finally:
        await b.close()
        if delete:
            await _delete_stream(servers, b.stream)


async def _delete_stream(servers: list[str], stream: str) -> None:
    nc = await nats.connect(servers, max_reconnect_attempts=1)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()
