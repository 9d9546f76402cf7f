"""A `concurrent.futures.Executor` whose calls run as Pratai jobs.

Each call is pickled in the caller's thread (so an unpicklable call fails in `submit`, and the
arguments are captured as they are then), then a pool thread creates its job and long-polls
its result: `max_workers` bounds the jobs in flight and the threads and connections they use.
The future stays pending until the job's outcome is known, so `cancel()` can still cancel a
job that the server has queued but not started."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import Executor as BaseExecutor
from typing import TYPE_CHECKING, Any

from pratai.errors import ApiError
from pratai.sdk.jobs import JobOptions, Outcome, chunk_outcomes, settle, unwrap
from pratai.sdk.pickling import dumps_call, dumps_chunk

if TYPE_CHECKING:
    from pratai.sdk.client import Client, Job

__all__ = ["Executor", "JobFuture", "auto_chunksize", "chunk_bodies"]

# A job is created with the server holding its answer this long: most finish by then and come
# back with their result, one request instead of two. Short, because the job's future cannot
# be cancelled server-side before its id is known (it then is, once the answer comes).
EARLY_WAIT_S = 0.25


def auto_chunksize(items: int, max_workers: int) -> int:
    """Items per job of a map: about four jobs per in-flight slot, like multiprocessing.Pool,
    so that a slow item delays little while 10,000 trivial items need few round trips."""
    return max(1, -(-items // (max_workers * 4)))


def chunk_bodies(
    fn: Callable[..., Any], iterables: Iterable[Iterable[Any]], chunksize: int | None, workers: int
) -> list[bytes]:
    """A map's jobs: `fn` over the zipped `iterables`, `chunksize` calls to a job (default
    `auto_chunksize`), each job pickled."""
    items = list(zip(*iterables, strict=False))
    size = chunksize or auto_chunksize(len(items), workers)
    return [dumps_chunk(fn, items[i : i + size]) for i in range(0, len(items), size)]


class JobFuture(Future[Any]):
    """A Future bound to a job once the job exists (`job`); `cancel()` cancels a queued job
    server-side."""

    def __init__(self) -> None:
        super().__init__()
        self.job: Job | None = None
        self._bind = threading.Lock()

    def cancel(self) -> bool:
        with self._bind:
            job = self.job
            if job is None or self.done():
                return super().cancel()  # not sent yet: the pool thread will not send it
        if job.refresh()["status"] != "queued" or not job.cancel():
            return False  # running or finished: like concurrent.futures, too late
        return super().cancel()


class Executor(BaseExecutor):
    def __init__(self, client: Client, max_workers: int = 32, opts: JobOptions | None = None):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._client = client
        self._options = opts or JobOptions()
        self._max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="pratai-job")
        self._pending: set[JobFuture] = set()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._send(dumps_call(fn, args, kwargs), chunk=False)

    def _send(self, body: bytes, chunk: bool) -> JobFuture:
        future = JobFuture()
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        self._pool.submit(self._run, future, body, chunk)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _run(self, future: JobFuture, body: bytes, chunk: bool) -> None:
        if future.cancelled():
            future.set_running_or_notify_cancel()  # tells concurrent.futures.wait() & co.
            return
        try:
            job = self._client.create_job(body, self._options, EARLY_WAIT_S)
        except BaseException as exc:
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)
            return
        with future._bind:
            future.job = job
            cancelled = future.cancelled()
        if cancelled:  # cancelled while its job was being created
            job.cancel()
            future.set_running_or_notify_cancel()
            return
        try:
            ok, value = self._client._run(settle(job, None))
        except BaseException as exc:  # the server could not be asked
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)
            return
        if not ok and isinstance(value, CancelledError):
            Future.cancel(future)  # cancelled server-side: the future is cancelled too
        if future.set_running_or_notify_cancel():
            if not ok:
                future.set_exception(value)
            else:
                future.set_result(chunk_outcomes(value) if chunk else value)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[Any]:
        """Results in order. Items go to jobs `chunksize` at a time (default `auto_chunksize`:
        unlike ProcessPoolExecutor's 1, since each job is an HTTP round trip)."""
        bodies = chunk_bodies(fn, iterables, chunksize, self._max_workers)
        deadline = None if timeout is None else time.monotonic() + timeout
        futures = [self._send(body, chunk=True) for body in bodies]

        def results() -> Iterator[Any]:
            try:
                for future in futures:
                    left = None if deadline is None else deadline - time.monotonic()
                    outcomes: list[Outcome] = future.result(left)
                    for outcome in outcomes:
                        yield unwrap(outcome)
            finally:
                for future in futures:
                    future.cancel()

        return results()

    def abandon(self) -> None:
        """Cancels every job not yet finished, running ones included (they are killed), and
        shuts down without waiting: for work whose results nobody will read (`client.map`
        left before its end)."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            with future._bind:
                job = future.job
            if job is None:
                future.cancel()
            else:
                # its pool thread's long-poll then returns at once; a server that cannot be
                # reached has nothing to stop
                with contextlib.suppress(ApiError):
                    job.cancel()
        self._pool.shutdown(wait=False)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            with self._lock:
                pending = list(self._pending)
            for future in pending:
                future.cancel()
        # The pool runs even a cancelled future's task: it tells the future's waiters.
        self._pool.shutdown(wait=wait)
