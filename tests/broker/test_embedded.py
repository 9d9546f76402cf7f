"""EmbeddedBroker: delivery, leases, dedupe, durability across kill -9, competing consumers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from pratai.broker import Broker, Delivery, open_broker
from pratai.broker.embedded import EmbeddedBroker

REPO = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(loop_scope="function")
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    b = EmbeddedBroker(str(tmp_path / "q" / "broker.sqlite3"))
    await b.open()
    try:
        yield b
    finally:
        await b.close()


async def _next(b: Broker, queue: str, lease_s: float = 60.0, timeout: float = 5.0) -> Delivery:
    gen = b.consume(queue, lease_s=lease_s)
    try:
        return await asyncio.wait_for(anext(gen), timeout)
    finally:
        await gen.aclose()  # type: ignore[attr-defined]


async def _nothing(b: Broker, queue: str, within: float = 0.2) -> None:
    gen = b.consume(queue)
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(gen), within)
    finally:
        await gen.aclose()  # type: ignore[attr-defined]


async def test_publish_consume_ack(broker: EmbeddedBroker) -> None:
    mid = await broker.publish("work", b"hello")
    assert len(mid) == 32
    assert await broker.publish("work", b"second", message_id="m2") == "m2"
    await broker.publish("other", b"elsewhere")
    d1 = await _next(broker, "work")
    d2 = await _next(broker, "work")
    assert (d1.queue, d1.id, d1.body, d1.attempts) == ("work", mid, b"hello", 1)
    assert (d2.id, d2.body) == ("m2", b"second")
    await broker.ack(d1)
    await broker.ack(d2)
    await _nothing(broker, "work")
    assert (await _next(broker, "other")).body == b"elsewhere"


async def test_consumer_wakes_promptly_on_publish(broker: EmbeddedBroker) -> None:
    gen = broker.consume("wake")
    waiter = asyncio.ensure_future(anext(gen))
    await asyncio.sleep(0.05)  # let the consumer find the queue empty and start waiting
    assert not waiter.done()
    t0 = time.perf_counter()
    await broker.publish("wake", b"x")
    d = await asyncio.wait_for(waiter, 5)
    elapsed = time.perf_counter() - t0
    await gen.aclose()
    assert d.body == b"x"
    assert elapsed < broker.poll_s / 2, elapsed  # woken by the publish, not by polling


async def test_nack_with_delay(broker: EmbeddedBroker) -> None:
    await broker.publish("q", b"retry me")
    d = await _next(broker, "q")
    await broker.nack(d, delay_s=0.3)
    t0 = time.monotonic()
    again = await _next(broker, "q")
    assert time.monotonic() - t0 >= 0.25
    assert (again.id, again.attempts) == (d.id, 2)
    await broker.nack(again)  # no delay: available at once
    third = await _next(broker, "q", timeout=0.2)
    assert third.attempts == 3


async def test_redelivery_after_lease_expiry_and_extend(broker: EmbeddedBroker) -> None:
    await broker.publish("q", b"slow")
    d = await _next(broker, "q", lease_s=0.3)
    await _nothing(broker, "q", within=0.1)  # leased: nobody else gets it
    again = await _next(broker, "q", lease_s=0.3, timeout=3)
    assert (again.id, again.attempts) == (d.id, 2)
    await broker.extend(again, 30)
    await _nothing(broker, "q", within=0.5)  # the extended lease holds past 0.3 s
    await broker.ack(again)
    await _nothing(broker, "q")


async def test_dedupe_by_id(broker: EmbeddedBroker) -> None:
    assert await broker.publish("q", b"first", message_id="same") == "same"
    assert await broker.publish("q", b"dup", message_id="same") == "same"
    d = await _next(broker, "q")
    assert d.body == b"first"
    await _nothing(broker, "q")
    await broker.ack(d)
    await broker.publish("q", b"after ack", message_id="same")  # acked ids may be reused
    assert (await _next(broker, "q")).body == b"after ack"


async def test_two_consumers_never_share_a_message(broker: EmbeddedBroker) -> None:
    n = 200
    seen: list[tuple[int, str]] = []

    async def consumer(k: int) -> None:
        async for d in broker.consume("jobs"):
            seen.append((k, d.id))
            await broker.ack(d)
            if len(seen) >= n:
                return

    tasks = [asyncio.create_task(consumer(k)) for k in range(4)]
    await asyncio.sleep(0)
    await asyncio.gather(*(broker.publish("jobs", str(i).encode()) for i in range(n)))
    done, pending = await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert done
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    ids = [mid for _, mid in seen]
    assert len(ids) == len(set(ids)) == n
    assert len({k for k, _ in seen}) > 1  # the work was actually shared


async def test_durable_across_kill(tmp_path: Path) -> None:
    path = str(tmp_path / "broker.sqlite3")
    code = (
        "import asyncio, os, signal, sys\n"
        "from pratai.broker.embedded import EmbeddedBroker\n"
        "async def main():\n"
        "    b = EmbeddedBroker(sys.argv[1]); await b.open()\n"
        "    await b.publish('q', b'survives', message_id='m1')\n"
        "    await b.publish('q', b'leased', message_id='m2')\n"
        "    gen = b.consume('q', lease_s=3600)\n"
        "    d = await anext(gen)\n"  # m1 is leased by this process when it dies
        "    print(d.id, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code, path], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["m1"]

    b = open_broker("embedded", path)
    await b.open()  # open() releases the dead process's leases
    try:
        got = [await _next(b, "q"), await _next(b, "q")]
        assert sorted((d.id, d.body, d.attempts) for d in got) == [
            ("m1", b"survives", 2),
            ("m2", b"leased", 1),
        ]
    finally:
        await b.close()


async def test_open_twice_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "broker.sqlite3")
    b = EmbeddedBroker(path)
    await b.open()
    await b.open()
    await b.publish("q", b"kept")
    await b.close()
    await b.close()
    b2 = EmbeddedBroker(path, release_on_open=False)
    await b2.open()
    try:
        d = await _next(b2, "q", lease_s=3600)
        await b2.release_all()
        again = await _next(b2, "q")
        assert (again.id, again.attempts) == (d.id, 2)
    finally:
        await b2.close()


async def test_close_ends_consumers(broker: EmbeddedBroker) -> None:
    got: list[Delivery] = []

    async def run() -> None:
        async for d in broker.consume("q"):
            got.append(d)

    task = asyncio.create_task(run())
    await asyncio.sleep(0.05)
    await broker.close()
    await asyncio.wait_for(task, 2)
    assert got == []
