"""AMQP 0-9-1 (RabbitMQ) connector: every message on a queue is an event.

On connect it looks the queue up (passive declare) and declares it durable when it is missing; an
existing queue is used as it is, whatever its arguments. It consumes with manual acks and a
bounded prefetch, and acks a message only after `emit` returned: delivery is at-least-once.

When `emit` raises, the message is not acked and is retried in place after a backoff (rather than
nacked with requeue at once): a requeued message goes behind the ones already prefetched, so
retrying in place keeps the queue's order, and a connector that stops or loses its connection
while holding the message leaves it unacked, so the broker requeues it anyway.

Event data: the body JSON-decoded when it is JSON, else text, else bytes. `Incoming.subject` is
the queue name, type "amqp.message", `Incoming.id` the message's `message_id` when set.
"""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelNotFoundEntity

from pratai.connectors._common import ConnectionLost, ReconnectingConnector, decode_payload
from pratai.connectors.base import Emit, Incoming

PREFETCH = 100


class AmqpConnector(ReconnectingConnector):
    kind = "amqp"

    def __init__(self, url: str, queue: str, prefetch: int = PREFETCH) -> None:
        super().__init__(url)
        self.queue = queue
        self.prefetch = prefetch

    async def _session(self, emit: Emit) -> None:
        connection = await aio_pika.connect(self.url, timeout=5)
        try:
            await self._consume(connection, emit)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2)

    async def _consume(self, connection: AbstractConnection, emit: Emit) -> None:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(self.queue, passive=True)
        except ChannelNotFoundEntity:  # missing: the failed lookup closed that channel
            channel = await connection.channel()
            queue = await channel.declare_queue(self.queue, durable=True)
        await channel.set_qos(prefetch_count=self.prefetch)

        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            inbox.put_nowait(message)  # bounded by the prefetch count

        await queue.consume(on_message, no_ack=False)
        self._connected()
        while True:
            if connection.is_closed or channel.is_closed:
                raise ConnectionLost("AMQP connection closed")
            try:
                message = await asyncio.wait_for(inbox.get(), 0.5)
            except TimeoutError:
                continue
            if channel.is_closed:
                # Unacked messages of a closed channel are requeued by the broker.
                raise ConnectionLost("AMQP channel closed")
            incoming = Incoming(
                data=decode_payload(message.body),
                subject=self.queue,
                type="amqp.message",
                id=message.message_id,
            )
            await self._forward(emit, incoming)
            await message.ack()
