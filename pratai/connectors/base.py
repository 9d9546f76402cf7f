"""The contract every connector kind implements.

A connector is long-running: `run()` connects, forwards every message it receives to `emit` as an
`Incoming`, and reconnects with backoff when its server goes away, until it is cancelled. It keeps
`status` current so `connector-show` can say whether it is connected, how many events it
forwarded and its last error. Delivery is at-least-once: a message is acknowledged to its source
(where the source has acks) only after `emit` returned, because `emit` returns once the event is
durable in Pratai.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Incoming:
    """One message from the outside, before it becomes a CloudEvent."""

    data: Any  # JSON-decoded when the message is JSON, else str (utf-8) or bytes
    subject: str  # where it came from: NATS subject, MQTT topic, queue, stream, table
    type: str  # e.g. "nats.message", "mqtt.message", "amqp.message", "redis.stream.entry",
    # "postgres.insert" | "postgres.update" | "postgres.delete"
    id: str | None = None  # a stable source id when there is one (stream entry id, message id)
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass
class ConnectorStatus:
    connected: bool = False
    forwarded: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    connected_at: float | None = None


Emit = Callable[[Incoming], Awaitable[None]]


class Connector(Protocol):
    kind: str
    status: ConnectorStatus

    async def run(self, emit: Emit) -> None:
        """Forward messages until cancelled; never returns on a server error (reconnects)."""
