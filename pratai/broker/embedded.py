"""The embedded broker: a durable queue in its own SQLite file, for one machine.

Messages live in one table; a delivery is a lease (`lease_until`) on a row, an ack deletes it.
WAL + synchronous=NORMAL means a published message survives the process being killed.
All SQLite work runs on one thread with one connection, so claims in this process are
serialised (two consumers never get the same message); each claim is also a single atomic
UPDATE, so processes sharing the file are safe too.

Consumers wake on an in-process signal when something is published, nacked or released,
and otherwise poll every `poll_s` (and exactly when the next delayed/leased message is due).

`open()` clears every lease (see `release_all`): in the embedded single-process setup a
restart means whoever held those leases is dead, so their messages are delivered at once
instead of after the lease runs out. Pass `release_on_open=False` when several live
processes share one broker file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pratai.broker._waiters import Waiters
from pratai.broker.base import Delivery

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    available_at REAL NOT NULL,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_messages_queue_available ON messages (queue, available_at);
"""

_CLAIM = """
UPDATE messages SET lease_until = :now + :lease, attempts = attempts + 1
WHERE id = (
    SELECT id FROM messages
    WHERE queue = :queue AND available_at <= :now
      AND (lease_until IS NULL OR lease_until < :now)
    ORDER BY available_at, rowid LIMIT 1
)
RETURNING id, body, attempts
"""

# When will the next message of this queue become claimable (delay passed or lease expired)?
_NEXT_DUE = """
SELECT MIN(CASE WHEN lease_until IS NULL OR lease_until < available_at
                THEN available_at ELSE lease_until END)
FROM messages WHERE queue = :queue
"""


class EmbeddedBroker:
    def __init__(
        self,
        path: str,
        *,
        poll_s: float = 0.5,
        release_on_open: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.poll_s = poll_s
        self.release_on_open = release_on_open
        self.clock = clock  # when delays and leases end: tests move it instead of waiting
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._acks: list[str] = []
        self._ack_batch: asyncio.Future[None] | None = None
        self._ack_task: asyncio.Future[None] | None = None
        # one event per waiting consumer: a publish wakes one of them, not the whole herd
        self._waiters: dict[str, Waiters] = collections.defaultdict(Waiters)
        self._closed = asyncio.Event()

    # --- plumbing ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("EmbeddedBroker is not open")
        return self._db

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise RuntimeError("EmbeddedBroker is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _wake(self, queue: str | None = None) -> None:
        """Wake one consumer of `queue` (a message arrived), or every consumer (closing)."""
        if queue is None:
            for waiters in self._waiters.values():
                waiters.wake_all()
        elif queue in self._waiters:
            self._waiters[queue].wake_one()

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._db = db

    # --- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file and table if needed; then (by default) `release_all()`."""
        if self._executor is not None:
            return
        self._closed = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="pratai-broker")
        try:
            await self._run(self._connect)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise
        if self.release_on_open:
            await self.release_all()

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        self._closed.set()
        self._wake()

        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(shut)
        self._executor = None
        await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)

    async def release_all(self) -> None:
        """Clear every lease: all leased messages become deliverable now. Called by `open()`."""

        def work() -> None:
            self._conn().execute(
                "UPDATE messages SET lease_until = NULL WHERE lease_until IS NOT NULL"
            )

        await self._run(work)
        self._wake()

    # --- the Broker interface ---------------------------------------------------------

    async def publish(self, queue: str, body: bytes, *, message_id: str | None = None) -> str:
        mid = message_id or uuid.uuid4().hex

        def work() -> None:
            now = self.clock()
            self._conn().execute(
                "INSERT OR IGNORE INTO messages (id, queue, body, available_at, lease_until,"
                " attempts, created_at) VALUES (?, ?, ?, ?, NULL, 0, ?)",
                (mid, queue, bytes(body), now, now),
            )

        await self._run(work)
        self._wake(queue)
        return mid

    def _claim(self, queue: str, lease_s: float) -> tuple[Delivery | None, float | None]:
        db = self._conn()
        now = self.clock()
        # fetchall: the statement must run to completion so the autocommit write ends here
        rows = db.execute(_CLAIM, {"now": now, "lease": lease_s, "queue": queue}).fetchall()
        if rows:
            row = rows[0]
            return Delivery(queue=queue, id=row[0], body=bytes(row[1]), attempts=row[2]), None
        due = db.execute(_NEXT_DUE, {"queue": queue}).fetchone()
        return None, (due[0] if due else None)

    async def consume(self, queue: str, *, lease_s: float = 60.0) -> AsyncGenerator[Delivery, None]:
        """Yield deliveries until the broker closes; each one leased for `lease_s`."""
        closed = self._closed
        waiters = self._waiters[queue]
        while not closed.is_set():
            ev = waiters.add()  # before claiming, so a publish meanwhile is not missed
            try:
                delivery, due = await self._run(lambda: self._claim(queue, lease_s))
                if delivery is None:
                    await self._wait(ev, due)
            except BaseException:  # cancelled: its wake-up, if it got one, is another's
                waiters.leave(ev, pass_on=True)
                raise
            # woken for another message while claiming this one: that wake-up is another's
            waiters.leave(ev, pass_on=delivery is not None)
            if delivery is not None:
                yield delivery

    async def _wait(self, ev: asyncio.Event, due: float | None) -> None:
        wait = self.poll_s
        if due is not None:
            wait = min(wait, max(0.0, due - self.clock()) + 0.001)
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as the
        # event fires (gh-86296), and the consumer would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await ev.wait()

    async def ack(self, delivery: Delivery) -> None:
        """Deleted when this returns. Acks that arrive together share one statement."""
        self._acks.append(delivery.id)
        if self._ack_batch is None:
            self._ack_batch = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._flush_acks)
        await asyncio.shield(self._ack_batch)

    def _flush_acks(self) -> None:
        ids, self._acks = self._acks, []
        batch, self._ack_batch = self._ack_batch, None
        assert batch is not None

        def delete() -> None:
            self._conn().executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])

        async def run() -> None:
            try:
                await self._run(delete)
            except BaseException as exc:
                batch.set_exception(exc)
            else:
                batch.set_result(None)

        self._ack_task = asyncio.ensure_future(run())

    async def nack(self, delivery: Delivery, *, delay_s: float = 0.0) -> None:
        def work() -> None:
            self._conn().execute(
                "UPDATE messages SET lease_until = NULL, available_at = ? WHERE id = ?",
                (self.clock() + max(0.0, delay_s), delivery.id),
            )

        await self._run(work)
        self._wake(delivery.queue)

    async def extend(self, delivery: Delivery, lease_s: float) -> None:
        def work() -> None:
            self._conn().execute(
                "UPDATE messages SET lease_until = ? WHERE id = ?",
                (self.clock() + lease_s, delivery.id),
            )

        await self._run(work)
