"""What the nodes can hold: a function or job whose memory fits no node is refused at once,
rather than queued to wait for room that never comes; and how many CPUs the largest has, which
bounds what an instance may be given (`pratai.core.provisioning`)."""

from __future__ import annotations

from typing import Any, Protocol

from pratai.errors import InvalidInput


class NodeCapacity(Protocol):
    def largest_budget_mb(self) -> int:
        """The largest memory budget of any node that takes work: the most memory one
        instance can have."""

    def largest_cpus(self) -> int | None:
        """The most CPUs of any node that takes work; None while no node tells."""


class NodeDirectory(Protocol):
    """The nodes that run this platform's calls, as `GET /v1/nodes` lists them."""

    def nodes(self) -> list[dict[str, Any]]:
        """Each node: name, state (ready, draining, stopping, stopped, lost, unauthorized),
        memory, slots, busy, load, warm versions, seconds since its last heartbeat."""

    async def drain(self, name: str, drain: bool) -> dict[str, Any]:
        """Stops (or, with False, resumes) new work going to a node; returns it. NotFound for
        an unknown node; Conflict when there is nothing to drain."""


def check_fits(capacity: NodeCapacity | None, what: str, memory_mb: int) -> None:
    """Raises InvalidInput when `memory_mb` exceeds the memory budget of every node."""
    if capacity is None:
        return
    largest = capacity.largest_budget_mb()
    if memory_mb > largest:
        raise InvalidInput(
            f"{what} asks for {memory_mb} MB of memory, more than any node can give: the "
            f"largest node memory budget is {largest} MB (PRATAI_NODE_MEMORY_MB)",
            memory_mb=memory_mb,
            largest_budget_mb=largest,
        )
