"""At-least-once delivery, the same for every broker (MemoryBroker, EmbeddedBroker,
JetStreamBroker): ack, dedupe, wake on publish, delays, leases, competing consumers, close.

MemoryBroker and EmbeddedBroker take their time from a `Clock` the test moves, and poll once an
hour, so a consumer that is not woken by a signal would keep waiting (and the test would fail)
rather than pass by polling. JetStream keeps its own time: there the leases and delays are short
and real, and the test lets them pass; its consumers wait in pull requests of 30 s."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from pratai.broker import Broker, Delivery
from pratai.broker.embedded import EmbeddedBroker
from pratai.broker.memory import MemoryBroker
from tests.broker.support import jetstream, next_delivery, nothing_in
from tests.helpers import Clock, wait_for_async

HOUR = 3600.0


@dataclass
class Rig:
    """A broker under test, and how its time passes."""

    broker: Broker
    lease_s: float  # a lease the test lets run out
    delay_s: float  # a nack's delay the test waits out
    looked: Callable[[], int]  # grows each time a consumer looks at its queue (and waits)
    elapse: Callable[[float], Awaitable[None]]


async def _real_time(seconds: float) -> None:
    """Seconds pass on the server's clock: here time is what the test waits for."""
    end = time.monotonic() + seconds
    await wait_for_async(lambda: time.monotonic() >= end, seconds + 5, what=f"{seconds} s")


@pytest_asyncio.fixture(loop_scope="function", params=["memory", "embedded", "nats"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    if request.param == "nats":
        async with jetstream([request.getfixturevalue("nats_url")]) as js:
            yield Rig(js, lease_s=1.0, delay_s=0.5, looked=lambda: js.pulls, elapse=_real_time)
        return
    clock = Clock()

    async def advance(seconds: float) -> None:
        clock.advance(seconds)

    b: Broker
    if request.param == "memory":
        b = MemoryBroker(poll_s=HOUR, clock=clock)
    else:
        b = EmbeddedBroker(str(tmp_path / "q" / "broker.sqlite3"), poll_s=HOUR, clock=clock)
    await b.open()
    try:
        yield Rig(b, lease_s=30.0, delay_s=30.0, looked=lambda: clock.reads, elapse=advance)
    finally:
        await b.close()


@pytest.fixture
def broker(rig: Rig) -> Broker:
    return rig.broker


async def test_publish_consume_ack(broker: Broker) -> None:
    mid = await broker.publish("work", b"hello")
    assert len(mid) == 32
    assert await broker.publish("work", b"second", message_id="m2") == "m2"
    await broker.publish("other", b"elsewhere")
    d1 = await next_delivery(broker, "work")
    d2 = await next_delivery(broker, "work")
    assert (d1.queue, d1.id, d1.body, d1.attempts) == ("work", mid, b"hello", 1)
    assert (d2.id, d2.body) == ("m2", b"second")
    await broker.ack(d1)
    await broker.ack(d2)
    await nothing_in(broker, "work")
    assert (await next_delivery(broker, "other")).body == b"elsewhere"


async def test_dedupe_by_id(broker: Broker) -> None:
    assert await broker.publish("q", b"first", message_id="same") == "same"
    assert await broker.publish("q", b"dup", message_id="same") == "same"
    d = await next_delivery(broker, "q")
    assert d.body == b"first"
    await broker.publish("q", b"dup while leased", message_id="same")
    await nothing_in(broker, "q")
    await broker.ack(d)
    await broker.publish("q", b"after ack", message_id="same")  # acked ids may be reused
    again = await next_delivery(broker, "q")
    assert (again.body, again.attempts) == (b"after ack", 1)


async def test_a_waiting_consumer_wakes_on_publish(broker: Broker, rig: Rig) -> None:
    gen = broker.consume("wake")
    waiter = asyncio.ensure_future(anext(gen))
    await wait_for_async(lambda: rig.looked() > 0, what="the consumer to look at the queue")
    assert not waiter.done()
    await broker.publish("wake", b"x")
    async with asyncio.timeout(5):  # a consumer left to its hourly poll would not make it
        d = await waiter
    await gen.aclose()  # type: ignore[attr-defined]
    assert d.body == b"x"


async def test_a_consumer_that_gave_up_takes_no_wake_up(broker: Broker, rig: Rig) -> None:
    """A consumer cancelled while it waits (a worker stopping) leaves nothing behind that would
    take the wake-up of the next publish from a consumer still waiting."""
    quitter = asyncio.ensure_future(anext(broker.consume("wake")))
    await wait_for_async(lambda: rig.looked() > 0, what="the first consumer to wait")
    quitter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await quitter
    reads = rig.looked()
    gen = broker.consume("wake")
    stayer = asyncio.ensure_future(anext(gen))
    await wait_for_async(lambda: rig.looked() > reads, what="the second consumer to wait")
    await broker.publish("wake", b"x")
    async with asyncio.timeout(5):  # a consumer left to its hourly poll would not make it
        d = await stayer
    await gen.aclose()  # type: ignore[attr-defined]
    assert d.body == b"x"


async def test_nack_with_delay(broker: Broker, rig: Rig) -> None:
    await broker.publish("q", b"retry me")
    d = await next_delivery(broker, "q")
    await broker.nack(d, delay_s=rig.delay_s)
    await nothing_in(broker, "q")
    await rig.elapse(rig.delay_s)
    again = await next_delivery(broker, "q")
    assert (again.id, again.attempts) == (d.id, 2)
    await broker.nack(again)  # no delay: available at once
    third = await next_delivery(broker, "q")
    assert (third.id, third.attempts) == (d.id, 3)


async def test_redelivery_after_lease_expiry_and_extend(broker: Broker, rig: Rig) -> None:
    lease = rig.lease_s
    await broker.publish("q", b"slow")
    d = await next_delivery(broker, "q", lease_s=lease)
    await nothing_in(broker, "q", lease)  # leased: nobody else gets it
    await rig.elapse(lease * 1.05)
    again = await next_delivery(broker, "q", lease_s=lease)
    assert (again.id, again.attempts) == (d.id, 2)
    await broker.extend(again, lease * 3)
    await rig.elapse(lease * 2)
    await nothing_in(broker, "q", lease)  # the extended lease holds past its first one
    await broker.ack(again)
    await rig.elapse(lease * 2)  # past every lease, the extended one too
    await nothing_in(broker, "q", lease)  # acked: gone for good


async def test_two_consumers_never_share_a_message(broker: Broker) -> None:
    n = 200
    seen: list[tuple[int, str]] = []

    async def consumer(k: int) -> None:
        async for d in broker.consume("jobs"):
            seen.append((k, d.id))
            await asyncio.sleep(0)  # real work awaits something: the others get their turn
            await broker.ack(d)
            if len(seen) >= n:
                return

    tasks = [asyncio.create_task(consumer(k)) for k in range(4)]
    await asyncio.gather(*(broker.publish("jobs", str(i).encode()) for i in range(n)))
    done, pending = await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert done
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    ids = [mid for _, mid in seen]
    assert len(ids) == len(set(ids)) == n
    assert len({k for k, _ in seen}) > 1  # the work was actually shared


async def test_close_ends_consumers(broker: Broker, rig: Rig) -> None:
    got: list[Delivery] = []

    async def run() -> None:
        async for d in broker.consume("q"):
            got.append(d)

    task = asyncio.create_task(run())
    await wait_for_async(lambda: rig.looked() > 0, what="the consumer to look at the queue")
    await broker.close()
    async with asyncio.timeout(5):  # not its hourly poll: the close wakes it
        await task
    assert got == []
