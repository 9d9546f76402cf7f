"""NATS connector: every message on a subject (wildcards: `orders.*`, `orders.>`) is an event.

A core NATS subscription, so delivery is at-most-once at the source: messages published while the
connector is disconnected are not kept by the server (use JetStream for that). Messages received
are forwarded in order, and an `emit` that fails is retried, not dropped. The connector runs its
own reconnect loop (the client's is off) so that `status` tells the truth.

Event data: the payload JSON-decoded when it is JSON, else text, else bytes. `Incoming.subject` is
the message's subject, type "nats.message", `Incoming.id` the `Nats-Msg-Id` header when present.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoServersError

from pratai.connectors._common import ConnectionLost, ReconnectingConnector, decode_payload
from pratai.connectors.base import Emit, Incoming

QUEUE_SIZE = 1024


class NatsConnector(ReconnectingConnector):
    kind = "nats"

    def __init__(self, url: str, subject: str) -> None:
        super().__init__(url)
        self.subject = subject

    async def _session(self, emit: Emit) -> None:
        closed = asyncio.Event()
        reason: list[BaseException] = []
        queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=QUEUE_SIZE)

        async def on_error(exc: Exception) -> None:
            reason.append(exc)

        async def on_closed() -> None:
            closed.set()

        async def on_message(msg: Msg) -> None:
            await queue.put(msg)

        try:
            # The client's own reconnecting is off; with max_reconnect_attempts=1 (two tries at
            # once) it gives up on an unreachable server instead of retrying forever.
            nc: Client = await nats.connect(
                self.url,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=5,
                error_cb=on_error,
                closed_cb=on_closed,
                disconnected_cb=on_closed,
            )
        except NoServersError:
            if reason:
                raise reason[-1] from None
            raise
        try:
            await nc.subscribe(self.subject, cb=on_message)
            await nc.flush(timeout=5)
            self._connected()
            while True:
                try:
                    msg = queue.get_nowait()
                except asyncio.QueueEmpty:
                    if closed.is_set() or nc.is_closed:
                        detail = f": {reason[-1]}" if reason else ""
                        raise ConnectionLost(f"connection to NATS closed{detail}") from None
                    try:
                        msg = await asyncio.wait_for(queue.get(), 0.5)
                    except TimeoutError:
                        continue
                headers = msg.headers or {}
                incoming = Incoming(
                    data=decode_payload(msg.data),
                    subject=msg.subject,
                    type="nats.message",
                    id=headers.get("Nats-Msg-Id"),
                )
                await self._forward(emit, incoming)
        finally:
            if not nc.is_closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(nc.close(), 2)
