"""Redis Streams connector: every entry of a stream becomes an event, read through a consumer group.

On connect it creates the consumer group (`XGROUP CREATE ... MKSTREAM`; the group name defaults to
"pratai"), first re-reads this consumer's pending entries (id "0": read before but never acked,
for instance because the connection broke between `emit` and `XACK`), then blocks on new ones
(id ">"). Each entry is acked (`XACK`) only after `emit` returned: delivery is at-least-once.

The group is created at "$" (only new entries) the first time this connector creates it, and at
"0" when it has to create it again later: a group that vanished (a Redis restarted without
persistence) takes its stream with it, so every entry then in the stream is new to us.

Event data: the entry's fields as a dict of str (bytes when not utf-8); a field named `data` is
JSON-decoded when it holds JSON. `Incoming.id` is the entry id, type "redis.stream.entry".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from pratai.connectors._common import ReconnectingConnector
from pratai.connectors.base import Emit, Incoming

BATCH = 100
BLOCK_MS = 5000
CLOSE_TIMEOUT_S = 2.0


def _text(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def entry_data(fields: dict[bytes, bytes]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in fields.items():
        name = key.decode("utf-8", "replace")
        decoded: Any = _text(value)
        if name == "data" and isinstance(decoded, str):
            with contextlib.suppress(ValueError):
                decoded = json.loads(decoded)
        data[name] = decoded
    return data


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of an XREADGROUP reply on one stream, RESP2 (list) or RESP3 (dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(next(iter(reply.values()))[0]) if reply else []
    return list(reply[0][1])


class RedisStreamConnector(ReconnectingConnector):
    kind = "redis"

    def __init__(
        self, url: str, stream: str, group: str = "pratai", consumer: str = "pratai"
    ) -> None:
        super().__init__(url)
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._group_created = False

    async def _session(self, emit: Emit) -> None:
        client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=5,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        try:
            await self._ensure_group(client)
            self._connected()
            await self._consume(client, emit, "0")  # this consumer's pending entries first
            while True:
                await self._consume(client, emit, ">")
        finally:
            # A read cancelled mid-reply can leave redis-py's close waiting on the connection
            # for seconds (seen once in CI: over 10 s); a stopping connector must not wait.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await client.aclose()

    async def _ensure_group(self, client: aioredis.Redis) -> None:
        start = "0" if self._group_created else "$"
        try:
            await client.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_created = True

    async def _consume(self, client: aioredis.Redis, emit: Emit, start: str) -> None:
        """Reads from `start` and forwards; for "0" until no pending entry is left."""
        while True:
            try:
                reply = await client.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream: start},
                    count=BATCH,
                    block=None if start == "0" else BLOCK_MS,
                )
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream or group was deleted: create it again
                    await self._ensure_group(client)
                    continue
                raise
            entries = _entries(reply)
            for raw_id, fields in entries:
                entry_id = raw_id.decode()
                if not fields:  # pending entry that was deleted from the stream meanwhile
                    await client.xack(self.stream, self.group, entry_id)
                    continue
                incoming = Incoming(
                    data=entry_data(fields),
                    subject=self.stream,
                    type="redis.stream.entry",
                    id=entry_id,
                )
                await self._forward(emit, incoming)
                await client.xack(self.stream, self.group, entry_id)
            if start == ">" or not entries:
                return
