"""Taking deliveries in broker tests."""

from __future__ import annotations

import asyncio

from pratai.broker import Broker, Delivery


async def next_delivery(b: Broker, queue: str, lease_s: float = 60.0) -> Delivery:
    """What a new consumer of `queue` gets first."""
    gen = b.consume(queue, lease_s=lease_s)
    try:
        async with asyncio.timeout(5):
            return await anext(gen)
    finally:
        await gen.aclose()  # type: ignore[attr-defined]


async def nothing_in(b: Broker, queue: str) -> None:
    """Nothing of `queue` can be delivered now: a probe published now comes out first (both
    brokers deliver what is due in the order it became available)."""
    probe = await b.publish(queue, b"probe")
    got = await next_delivery(b, queue)
    assert (got.id, got.body) == (probe, b"probe"), f"{got.body!r} could be delivered"
    await b.ack(got)
