"""Warm instances of one function version: reuse, a concurrency cap, scale to zero (or, for
a function that asks for it, a fresh instance per call)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pratai.drivers import CallResult, Driver, Instance, InstanceSpec
from pratai.node.budget import MemoryBudget

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)

# The event loop keeps only weak references to tasks: these stops must not be collected.
_retiring: set[asyncio.Task[None]] = set()


@dataclass
class Outcome:
    result: CallResult
    cold_start: bool
    init_ms: float | None


class VersionPool:
    """Calls beyond `concurrency` wait their turn instead of failing. Each instance holds its
    memory limit in the node's `budget` from its start to its stop. With `fresh`, no instance
    serves two calls: each is stopped after its call, so nothing of one event (files, module
    state, memory) reaches the next, and every call is a cold start."""

    def __init__(
        self,
        driver: Driver,
        spec: InstanceSpec,
        concurrency: int,
        *,
        budget: MemoryBudget,
        fresh: bool = False,
    ) -> None:
        self.driver = driver
        self.spec = spec
        self.concurrency = concurrency
        self.budget = budget
        self.fresh = fresh
        self._slots = asyncio.Semaphore(concurrency)
        self._idle: list[tuple[float, Instance]] = []  # (last used, instance), newest last
        self._live: dict[int, Instance] = {}  # by id(): each instance holding its memory
        self.busy = 0
        self.last_used = time.monotonic()
        self.closed = False
        self.secret_values: list[str] = []  # masked in what the function prints
        self._retiring: set[asyncio.Task[None]] = set()  # fresh instances being stopped
        budget.add(self)

    @property
    def size(self) -> int:
        return self.busy + len(self._idle)

    async def call(
        self,
        payload: bytes,
        content_type: str,
        timeout_s: float,
        on_start: Callable[[], None] | None = None,
    ) -> Outcome:
        """`on_start` is called once the call has its turn (a slot), before any cold start. A
        cold start waits for room in the memory budget up to `timeout_s` (NodeMemoryFull)."""
        self.last_used = time.monotonic()
        await self._slots.acquire()
        retiring = False  # a fresh instance stops after the answer, its slot held till then
        try:
            if on_start is not None:
                on_start()
            self.busy += 1
            try:
                instance, cold = await self._take(self.budget.deadline(timeout_s))
                try:
                    result = await instance.call(payload, content_type, timeout_s)
                except asyncio.CancelledError:  # mid-call: its late answer would confuse the
                    await self._stop(instance)  # next caller, so this instance goes
                    raise
                except BaseException:
                    await self._give_back(instance)
                    raise
                if self.fresh and not self.closed:
                    self._retire(instance)
                    retiring = True
                else:
                    await self._give_back(instance)
                return Outcome(result, cold, instance.init_ms if cold else None)
            finally:
                self.busy -= 1
        finally:
            if not retiring:
                self._slots.release()

    def _retire(self, instance: Instance) -> None:
        """Stops a fresh instance after its answer has gone back (a stop takes some ms), still
        holding its call's slot and its memory until it is gone."""

        async def stop_then_free() -> None:
            try:
                await self._stop(instance)
            except Exception:  # nobody awaits this task: say so here
                log.exception("stopping a fresh instance of %s failed", self.spec.key)
            finally:
                self._slots.release()

        task = asyncio.create_task(stop_then_free())
        _retiring.add(task)
        task.add_done_callback(_retiring.discard)
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _take(self, deadline: float) -> tuple[Instance, bool]:
        while True:
            while self._idle:
                _, instance = self._idle.pop()
                if instance.alive:
                    return instance, False
                await self._stop(instance)
            if await self.budget.admit(self.spec.memory_mb, deadline):
                break
        try:
            instance = await self.driver.start(self.spec)
        except BaseException:
            self.budget.release(self.spec.memory_mb)
            raise
        self._live[id(instance)] = instance
        return instance, True

    async def _give_back(self, instance: Instance) -> None:
        if instance.alive and not self.closed and not self.fresh:
            self._idle.append((time.monotonic(), instance))
            self.budget.changed()  # a call waiting for room may take it, or stop it
        else:
            await self._stop(instance)

    async def _stop(self, instance: Instance) -> None:
        """Stops it, then gives its memory back (once, however often it is stopped)."""
        held = self._live.pop(id(instance), None) is not None
        try:
            await instance.stop()
        finally:
            if held:
                self.budget.release(self.spec.memory_mb)

    def oldest_idle(self) -> float | None:
        return self._idle[0][0] if self._idle else None

    async def stop_oldest_idle(self) -> None:
        _, instance = self._idle.pop(0)
        await self._stop(instance)

    async def reap(self, idle_timeout: float) -> None:
        """Stop instances idle longer than `idle_timeout`."""
        cutoff = time.monotonic() - idle_timeout
        stale = [inst for used, inst in self._idle if used < cutoff]
        self._idle = [(used, inst) for used, inst in self._idle if used >= cutoff]
        for instance in stale:
            await self._stop(instance)

    async def close(self) -> None:
        self.closed = True
        idle, self._idle = self._idle, []
        for _, instance in idle:
            await self._stop(instance)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


class Pools(Generic[K]):
    """A worker's pools by key: each made once, reaped when idle, closed together."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self._pools: dict[K, VersionPool] = {}
        self._lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None

    async def get(self, key: K, make: Callable[[], Awaitable[VersionPool]]) -> VersionPool:
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        async with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = await make()
        return pool

    def start_reaping(self) -> None:
        self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        """Stops idle instances, and forgets pools left empty (one pool per key: don't keep
        them all)."""
        interval = max(0.05, min(5.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            for key, pool in list(self._pools.items()):
                await pool.reap(self.idle_timeout)
                idle_for = time.monotonic() - pool.last_used
                if pool.size == 0 and idle_for > self.idle_timeout:
                    self._pools.pop(key, None)

    async def evict(self, which: Callable[[K], bool]) -> None:
        for key in [key for key in self._pools if which(key)]:
            await self._pools.pop(key).close()

    async def close(self) -> None:
        """Stops the reaper, then every instance (the worker stops its consumers first)."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reaper
        await self.evict(lambda key: True)

    def busy(self) -> int:
        """Calls running in all the pools."""
        return sum(pool.busy for pool in self._pools.values())

    def warm(self) -> list[K]:
        """The keys of the pools that have instances running."""
        return [key for key, pool in self._pools.items() if pool.size]

    def stats(self) -> list[dict[str, object]]:
        return [
            {
                "key": pool.spec.key,
                "busy": pool.busy,
                "instances": pool.size,
                "memory_mb": pool.spec.memory_mb,
            }
            for pool in self._pools.values()
        ]
