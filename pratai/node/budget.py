"""A node's memory budget: the memory limits of its instances never add up past it.

Every instance a node starts (a warm instance of a function or of SDK callables, a command
job's sandbox) reserves its memory limit first. When there is no room, idle warm instances are
stopped, least recently used first across every pool of the node; when busy instances fill the
budget, the start waits until one is stopped or becomes idle, up to the call's own timeout (at
most MAX_WAIT_S), and then fails with `NodeMemoryFull` instead of overcommitting.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Protocol

from pratai.core.provisioning import host_cpus
from pratai.errors import SandboxError

MAX_WAIT_S = 900.0  # the longest function timeout


class NodeMemoryFull(SandboxError):
    """No room in the node's budget for an instance, within the time it could wait."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="NodeMemoryFull")


class IdleHolder(Protocol):
    """A pool of warm instances, some of them idle (a `VersionPool`)."""

    def oldest_idle(self) -> float | None:
        """When its least recently used idle instance was last used; None if none is idle."""

    async def stop_oldest_idle(self) -> None:
        """Stops that instance (which gives its memory back)."""


class MemoryBudget:
    """Shared by every pool of a node. Also core's `NodeCapacity` for `pratai serve`, whose one
    node is the only one there is."""

    def __init__(self, total_mb: int) -> None:
        self.total_mb = total_mb
        self.used_mb = 0
        self.peak_mb = 0  # the most ever in use at once
        self.instances = 0
        self.waiting = 0
        self._holders: weakref.WeakSet[IdleHolder] = weakref.WeakSet()
        self._changed = asyncio.Event()  # replaced on each change: waiters hold the old one

    def largest_budget_mb(self) -> int:
        return self.total_mb

    def largest_cpus(self) -> int:
        return host_cpus()  # the node runs on this machine

    def add(self, holder: IdleHolder) -> None:
        """Its idle instances may be stopped to make room for others."""
        self._holders.add(holder)

    def deadline(self, timeout_s: float) -> float:
        """When a start that may wait `timeout_s` stops waiting (on the event loop's clock)."""
        return asyncio.get_running_loop().time() + min(timeout_s, MAX_WAIT_S)

    async def admit(self, memory_mb: int, deadline: float) -> bool:
        """Reserves `memory_mb` for a new instance, stopping idle ones to make room: True.
        When busy instances fill the budget, waits for one to stop or become idle, then
        returns False (the caller may now find an idle instance of its own; else it asks
        again). Raises NodeMemoryFull once `deadline` has passed."""
        if memory_mb > self.total_mb:
            raise NodeMemoryFull(
                f"the instance needs {memory_mb} MB of memory, more than the node's memory "
                f"budget of {self.total_mb} MB (PRATAI_NODE_MEMORY_MB)"
            )
        while self.used_mb + memory_mb > self.total_mb:
            holder = self._least_recently_used()
            if holder is None:
                await self._wait(memory_mb, deadline)
                return False
            await holder.stop_oldest_idle()
        self.used_mb += memory_mb
        self.peak_mb = max(self.peak_mb, self.used_mb)
        self.instances += 1
        return True

    async def reserve(self, memory_mb: int, deadline: float) -> None:
        """`admit`, for an instance that has no pool to find an idle one in."""
        while not await self.admit(memory_mb, deadline):
            pass

    def release(self, memory_mb: int) -> None:
        """An instance that reserved `memory_mb` has stopped (or never started)."""
        self.used_mb -= memory_mb
        self.instances -= 1
        self.changed()

    def changed(self) -> None:
        """Wakes the waiters: an instance stopped, or became idle and may be stopped."""
        self._changed.set()
        self._changed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def held(self, memory_mb: int, timeout_s: float) -> AsyncIterator[None]:
        """Room for one instance without a pool (a command job's sandbox) while it runs."""
        await self.reserve(memory_mb, self.deadline(timeout_s))
        try:
            yield
        finally:
            self.release(memory_mb)

    def _least_recently_used(self) -> IdleHolder | None:
        oldest: tuple[float, IdleHolder] | None = None
        for holder in self._holders:
            at = holder.oldest_idle()
            if at is not None and (oldest is None or at < oldest[0]):
                oldest = (at, holder)
        return oldest[1] if oldest else None

    async def _wait(self, memory_mb: int, deadline: float) -> None:
        changed = self._changed
        self.waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await changed.wait()
        except TimeoutError:
            raise NodeMemoryFull(
                f"the node's memory is full: its busy instances hold {self.used_mb} MB of its "
                f"{self.total_mb} MB memory budget (PRATAI_NODE_MEMORY_MB) and none freed "
                f"{memory_mb} MB in time"
            ) from None
        finally:
            self.waiting -= 1

    def stats(self) -> dict[str, int]:
        return {
            "budget_mb": self.total_mb,
            "used_mb": self.used_mb,
            "peak_mb": self.peak_mb,
            "instances": self.instances,
            "waiting": self.waiting,
        }
