"""A node's worker: consumers of one broker queue, and the warm pools their handler runs in.

Each consumer takes a delivery, runs the handler on it, then acks or nacks it. The node's two
workers (invocations, jobs) differ only in their queue, their lease and their handler; this
loop, its redelivery rules, the pools' reaping and the shutdown are the same for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pratai.broker import Broker, Delivery
from pratai.node.pool import Pools

log = logging.getLogger("pratai.node")

Handler = Callable[[str], Awaitable[float | None]]
"""Runs what a delivery names (its body, decoded). Returns None when that is done (ack), or in
how many seconds it should come again (nack). If it raises, it comes again after a backoff."""


class Worker:
    def __init__(
        self,
        queue: str,
        *,
        lease_s: float,
        what: str,
        pools: Pools[Any] | None = None,
        keep_s: float | None = None,
    ) -> None:
        self.queue = queue
        # Longer than the longest run, so a live process keeps its delivery; or, with `keep_s`,
        # a short lease that the process keeps renewing for up to `keep_s` while it runs, so
        # that a dead process's deliveries come back after one short lease.
        self.lease_s = lease_s
        self.keep_s = keep_s
        self.what = what  # what a delivery names, for the log
        self.pools = pools
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, broker: Broker, handler: Handler, consumers: int) -> None:
        """Runs `consumers` deliveries at once, at most."""
        if self.pools is not None:
            self.pools.start_reaping()
        for _ in range(consumers):
            self._tasks.append(asyncio.create_task(self._consume(broker, handler)))

    async def _consume(self, broker: Broker, handler: Handler) -> None:
        async for delivery in broker.consume(self.queue, lease_s=self.lease_s):
            await self._handle(broker, handler, delivery)

    async def _handle(self, broker: Broker, handler: Handler, delivery: Delivery) -> None:
        name = delivery.body.decode(errors="replace")
        try:
            if self.keep_s is not None:
                await broker.extend(delivery, self.keep_s)
            again_in = await handler(name)
        except Exception:
            log.exception("%s %s could not run; it will be retried", self.what, name)
            await broker.nack(delivery, delay_s=min(60.0, 2.0**delivery.attempts))
            return
        if again_in is None:
            await broker.ack(delivery)
        else:
            await broker.nack(delivery, delay_s=again_in)

    async def stop(self) -> None:
        """Cancels every consumer, a running handler with it (its delivery, never acked, comes
        again), and waits for them; then stops the pools' instances. A second call while one
        waits cancels the consumers again."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = [task for task in self._tasks if not task.done()]
        if self.pools is not None:
            await self.pools.close()
