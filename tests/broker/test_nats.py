"""What only JetStreamBroker does: it outlives a restart of its server (kill -9) and of one
server of a cluster, its consumers in several processes compete for one queue, and Pratai sets
its stream's replica count. Delivery itself is in test_delivery.py, for every broker."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from pathlib import Path

import nats
import pytest
from nats.js.errors import APIError

from pratai.broker import Broker, open_broker
from pratai.broker.nats import JetStreamBroker
from pratai.errors import SettingsError
from pratai.settings import Settings
from tests.broker.support import jetstream, next_delivery
from tests.helpers import free_port, nats_servers, wait_for_async

# a server restarting or a cluster electing a leader: noticed and ridden out in about a second
QUICK = {"heartbeat_s": 1.0, "reconnect_wait_s": 0.1, "request_s": 1.0}


class Burst:
    """Publishes `count` messages, `at_once` at a time, into `queue`, with an outage once a third
    are accepted (their publish returned) while the others are in flight; and consumes them."""

    def __init__(self, broker: Broker, queue: str, outage: Callable[[], None]) -> None:
        self.broker = broker
        self.queue = queue
        self.outage = outage
        self.count = 300
        self.at_once = 10
        self.accepted: dict[str, bytes] = {}
        self.got: dict[str, list[bytes]] = collections.defaultdict(list)

    async def publish(self) -> None:
        async def sender(k: int) -> None:
            for i in range(k, self.count, self.at_once):
                body = f"message {i}".encode()
                self.accepted[await self.broker.publish(self.queue, body, message_id=f"m{i}")] = (
                    body
                )
                if len(self.accepted) == self.count // 3:
                    self.outage()

        await asyncio.gather(*(sender(k) for k in range(self.at_once)))

    async def consume(self) -> None:
        async for d in self.broker.consume(self.queue, lease_s=10):
            self.got[d.id].append(d.body)
            await self.broker.ack(d)

    def all_delivered(self) -> bool:
        return self.accepted.keys() <= self.got.keys()

    async def run(self) -> None:
        """Every message was accepted, and delivered as it was published, and nothing else,
        to a consumer that was waiting before the outage."""
        consumer = asyncio.create_task(self.consume())
        try:
            async with asyncio.timeout(60):
                await self.publish()
            assert len(self.accepted) == self.count
            await wait_for_async(self.all_delivered, timeout=60, what="every message delivered")
            assert self.got.keys() == self.accepted.keys()
            for mid, bodies in self.got.items():
                assert set(bodies) == {self.accepted[mid]}, mid
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)


async def test_a_restarted_server_loses_nothing_and_consumers_resume(tmp_path: Path) -> None:
    with nats_servers(tmp_path) as (server,):
        async with jetstream([server.url], delete=False, **QUICK) as b:

            def restart() -> None:  # on the same port and store
                server.kill()
                server.start()

            await Burst(b, "burst", restart).run()


async def test_two_processes_never_hold_one_message_at_once(nats_url: str) -> None:
    async with jetstream([nats_url]) as first:
        second = JetStreamBroker([nats_url], stream=first.stream, prefix=first.prefix)
        await second.open()
        held: dict[str, str] = {}
        times: collections.Counter[str] = collections.Counter()
        n = 200

        async def consumer(b: Broker, who: str) -> None:
            async for d in b.consume("shared"):
                assert d.id not in held, f"{d.id} held by {held.get(d.id)} and {who}"
                held[d.id] = who
                times[d.id] += 1
                await asyncio.sleep(0)  # real work awaits something: the others get their turn
                del held[d.id]
                await b.ack(d)

        who = [(b, f"{name}{k}") for b, name in ((first, "a"), (second, "b")) for k in range(3)]
        tasks = [asyncio.create_task(consumer(b, name)) for b, name in who]
        try:
            await asyncio.gather(*(first.publish("shared", b"x") for _ in range(n // 2)))
            await asyncio.gather(*(second.publish("shared", b"x") for _ in range(n // 2)))
            await wait_for_async(lambda: len(times) == n, timeout=30, what="every message")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await second.close()
        assert set(times.values()) == {1}  # none came twice: leases are long


async def test_a_new_lease_updates_the_queue_consumer(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with jetstream([nats_url]) as b:
        await b.publish("leases", b"x")
        first = await next_delivery(b, "leases", lease_s=60)
        with caplog.at_level(logging.WARNING, logger="pratai.broker"):
            await b.publish("leases", b"y")
            await next_delivery(b, "leases", lease_s=1)
        assert "queue leases: lease (AckWait) 60.0 s -> 1 s" in caplog.text
        nc = await nats.connect(nats_url)
        try:
            info = await nc.jetstream().consumer_info(b.stream, "leases")
        finally:
            await nc.close()
        assert info.config.ack_wait == 1
        again = await next_delivery(b, "leases", lease_s=1)  # the new lease holds for all
        assert (again.id, again.attempts) == (first.id, 2)


async def test_close_gives_back_what_the_consumers_hold(nats_url: str) -> None:
    """A process that stops gracefully: its unfinished deliveries come again at once, not
    after their lease."""
    async with jetstream([nats_url]) as b:
        await b.publish("held", b"unfinished")
        held = await next_delivery(b, "held", lease_s=3600)
        again = JetStreamBroker([nats_url], stream=b.stream, prefix=b.prefix)
        await again.open()
        try:
            await b.close()
            got = await next_delivery(again, "held", lease_s=3600)
            assert (got.id, got.body, got.attempts) == (held.id, b"unfinished", 2)
        finally:
            await again.close()


async def test_a_consumer_whose_durable_was_deleted_makes_it_again(nats_url: str) -> None:
    async with jetstream([nats_url]) as b:
        gen = b.consume("lost")
        waiter = asyncio.ensure_future(anext(gen))
        await wait_for_async(lambda: b.pulls > 0, what="the consumer to wait")
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().delete_consumer(b.stream, "lost")
        finally:
            await nc.close()
        await wait_for_async(lambda: b.pulls > 1, what="the consumer to ask again")
        await b.publish("lost", b"found")
        async with asyncio.timeout(10):
            assert (await waiter).body == b"found"
        await gen.aclose()


async def test_one_server_refuses_three_replicas(nats_url: str) -> None:
    b = JetStreamBroker([nats_url], replicas=3, stream="RTHREE", prefix="rthree", retry_s=5)
    with pytest.raises(APIError, match="replicas"):
        await b.open()


async def test_a_cluster_keeps_three_replicas_and_loses_nothing_when_one_server_dies(
    tmp_path: Path,
) -> None:
    with nats_servers(tmp_path, count=3) as servers:
        urls = [server.url for server in servers]
        async with jetstream(urls, delete=False, replicas=3, **QUICK) as b:
            nc = await nats.connect(urls)
            try:
                info = await nc.jetstream().stream_info(b.stream)
            finally:
                await nc.close()
            assert info.config.num_replicas == 3
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2
            leader = next(s for s in servers if s.name == info.cluster.leader)
            await Burst(b, "burst", leader.kill).run()


async def test_an_unreachable_server_fails_open_in_time() -> None:
    b = JetStreamBroker([f"nats://127.0.0.1:{free_port()}"], retry_s=1)
    with pytest.raises(ConnectionError, match=r"cannot reach NATS at nats://127\.0\.0\.1:"):
        await b.open()


def test_broker_urls_and_replicas_from_the_settings() -> None:
    env = {"PRATAI_BROKER_URL": "nats://a:4222, nats://b:4223", "PRATAI_NATS_REPLICAS": "3"}
    settings = Settings.from_env(env)
    b = open_broker(settings.broker_url, "", replicas=settings.nats_replicas)
    assert isinstance(b, JetStreamBroker)
    assert (b.servers, b.replicas) == (["nats://a:4222", "nats://b:4223"], 3)
    for bad in ({"PRATAI_BROKER_URL": "nats://"}, {"PRATAI_NATS_REPLICAS": "7"}):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)
    with pytest.raises(ValueError, match="use memory, embedded, or nats://host:port"):
        open_broker("redis://a", "")
