"""Group commit: one thread and one connection run queued units of work, many per transaction.

SQLite allows one writer at a time, so its work is serialised anyway; committing everything that
queued up meanwhile in a single transaction turns N commits into one under load, and costs
nothing when idle (a batch of one). If any unit fails, the batch is rolled back and each unit
runs again on its own, so one caller's error never becomes another's.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

T = TypeVar("T")
Work = Callable[[Connection], Any]
_Item = tuple[Work, asyncio.Future[Any], asyncio.AbstractEventLoop]
_STOP = None


def _deliver(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class GroupCommitter:
    def __init__(
        self,
        connect: Callable[[], Connection],
        run_alone: Callable[[Connection, Work], Any],
        max_batch: int = 128,
    ) -> None:
        self._connect = connect
        self._run_alone = run_alone  # one unit in its own transaction, errors translated
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="pratai-store", daemon=True)
        self._conn: Connection | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def submit(self, work: Callable[[Connection], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((work, future, loop))
        return future

    def _serve(self) -> None:
        conn = self._connect()
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        self._queue.put(_STOP)  # finish this batch, then stop
                        break
                    batch.append(item)
                self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(self, conn: Connection, batch: list[_Item]) -> None:
        if len(batch) > 1:
            try:
                results = [work(conn) for work, _, _ in batch]
                conn.commit()
            except Exception:
                conn.rollback()
            else:
                for (_, future, loop), result in zip(batch, results, strict=True):
                    loop.call_soon_threadsafe(_deliver, future, result, None)
                return
        for work, future, loop in batch:
            try:
                result, error = self._run_alone(conn, work), None
            except BaseException as exc:
                result, error = None, exc
            loop.call_soon_threadsafe(_deliver, future, result, error)
