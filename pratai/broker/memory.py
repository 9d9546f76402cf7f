"""An in-process broker: asyncio queues with leases, delays and de-duplication.

It keeps nothing on disk. That is enough where the work it carries is already durable elsewhere,
as in `pratai serve`, where every queued invocation is a row in the store and a restart
requeues them (`Invocations.recover`). For several processes on one machine use the embedded
SQLite broker; for many machines, NATS JetStream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from pratai.broker._waiters import Waiters
from pratai.broker.base import Delivery


@dataclass(order=True)
class _Message:
    available_at: float
    order: int
    id: str = field(compare=False)
    body: bytes = field(compare=False)
    attempts: int = field(default=0, compare=False)


class _Queue:
    def __init__(self) -> None:
        self.ready: list[_Message] = []  # heap by (available_at, order)
        self.leased: dict[str, tuple[float, _Message]] = {}  # id -> (lease until, message)
        self.known: set[str] = set()  # ids queued or leased: publishing them again is a no-op
        self.waiters = Waiters()


class MemoryBroker:
    def __init__(self, *, poll_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.poll_s = poll_s
        self.clock = clock  # when delays and leases end: tests move it instead of waiting
        self._queues: dict[str, _Queue] = collections.defaultdict(_Queue)
        self._order = itertools.count()
        self._closed = asyncio.Event()

    async def open(self) -> None:
        self._closed.clear()

    async def close(self) -> None:
        self._closed.set()
        for queue in self._queues.values():
            queue.waiters.wake_all()

    def _push(self, queue: _Queue, message: _Message) -> None:
        heapq.heappush(queue.ready, message)
        queue.waiters.wake_one()

    async def publish(self, queue: str, body: bytes, *, message_id: str | None = None) -> str:
        mid = message_id or uuid.uuid4().hex
        q = self._queues[queue]
        if mid not in q.known:
            q.known.add(mid)
            self._push(q, _Message(self.clock(), next(self._order), mid, bytes(body)))
        return mid

    def _claim(self, q: _Queue, lease_s: float) -> tuple[Delivery | None, float | None]:
        now = self.clock()
        for mid, (until, message) in list(q.leased.items()):
            if until < now:  # lease expired: the consumer died or hung
                del q.leased[mid]
                heapq.heappush(q.ready, message)
        if q.ready and q.ready[0].available_at <= now:
            message = heapq.heappop(q.ready)
            message.attempts += 1
            q.leased[message.id] = (now + lease_s, message)
            return Delivery("", message.id, message.body, message.attempts), None
        due = [q.ready[0].available_at] if q.ready else []
        due += [until for until, _ in q.leased.values()]
        return None, min(due) if due else None

    async def consume(self, queue: str, *, lease_s: float = 60.0) -> AsyncGenerator[Delivery, None]:
        q = self._queues[queue]
        while not self._closed.is_set():
            delivery, due = self._claim(q, lease_s)
            if delivery is not None:
                delivery.queue = queue
                yield delivery
                continue
            ev = q.waiters.add()
            wait = self.poll_s if due is None else max(0.0, due - self.clock()) + 0.001
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await ev.wait()
            except BaseException:  # cancelled: its wake-up, if it got one, is another's
                q.waiters.leave(ev, pass_on=True)
                raise
            q.waiters.leave(ev)

    async def ack(self, delivery: Delivery) -> None:
        q = self._queues[delivery.queue]
        if q.leased.pop(delivery.id, None) is not None:
            q.known.discard(delivery.id)

    async def nack(self, delivery: Delivery, *, delay_s: float = 0.0) -> None:
        q = self._queues[delivery.queue]
        leased = q.leased.pop(delivery.id, None)
        if leased is not None:
            message = leased[1]
            message.available_at = self.clock() + max(0.0, delay_s)
            message.order = next(self._order)
            self._push(q, message)

    async def extend(self, delivery: Delivery, lease_s: float) -> None:
        q = self._queues[delivery.queue]
        leased = q.leased.get(delivery.id)
        if leased is not None:
            q.leased[delivery.id] = (self.clock() + lease_s, leased[1])
