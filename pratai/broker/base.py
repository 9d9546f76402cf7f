"""At-least-once delivery: a message stays until acked; unacked ones return after a lease."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass
class Delivery:
    queue: str
    id: str
    body: bytes
    attempts: int  # 1 on first delivery


class Broker(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def publish(self, queue: str, body: bytes, *, message_id: str | None = None) -> str:
        """Durable when it returns. Publishing an id that is still queued is a no-op.
        Returns the message id."""

    def consume(self, queue: str, *, lease_s: float = 60.0) -> AsyncIterator[Delivery]:
        """Yields deliveries forever, waking promptly on publish. A delivery not acked within
        `lease_s` (or when the process dies) is delivered again."""

    async def ack(self, delivery: Delivery) -> None: ...

    async def nack(self, delivery: Delivery, *, delay_s: float = 0.0) -> None:
        """Give the message back, visible again after `delay_s`."""

    async def extend(self, delivery: Delivery, lease_s: float) -> None:
        """Keep a long-running delivery from being redelivered."""
