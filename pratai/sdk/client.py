"""`pratai.Client`: the blocking twin of the SDK's surface (`base`, `functions`, `jobs`). It
carries out their exchanges on `transport.FastHttp` and `time.sleep`; `aio.AsyncClient` is the
same surface for asyncio."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, TypeVar

from pratai.sdk.base import BaseClient, MapPlan
from pratai.sdk.executor import Executor
from pratai.sdk.functions import BaseEvents, BaseFunctions, BaseInvocation
from pratai.sdk.jobs import BaseJob, Requirements, options
from pratai.sdk.protocol import Conversation, Exchange, Pause
from pratai.sdk.transport import FastHttp
from pratai.sdk.twins import Blocking

__all__ = ["Client", "Events", "Functions", "Invocation", "Job"]

T = TypeVar("T")


class Job(BaseJob, Blocking):
    """A job on the server: `job.result()` blocks until it has finished, and returns its value
    or raises its exception."""


class Invocation(BaseInvocation, Blocking):
    pass


class Functions(BaseFunctions[Invocation], Blocking):
    _invocation = Invocation


class Events(BaseEvents, Blocking):
    pass


class Client(BaseClient[Job, Iterator[Any]], Blocking):
    _job = Job

    def _connect(self, api_key: str, timeout: float, max_connections: int) -> None:
        self._http = FastHttp(self.url, api_key, timeout)
        self.functions = Functions(self)
        self.events = Events(self)

    def _run(self, exchange: Exchange[T]) -> T:
        talk = Conversation(exchange)
        for step in talk:
            if isinstance(step, Pause):
                time.sleep(step.seconds)
            else:
                talk.reply(self._http.send(step))
        return talk.result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def executor(
        self,
        max_workers: int = 32,
        *,
        requirements: Requirements = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        network: bool | None = None,
    ) -> Executor:
        """A `concurrent.futures.Executor` running each call as a job; at most `max_workers`
        jobs are in flight (each holds one local thread waiting on its result)."""
        return Executor(self, max_workers, options(requirements, memory_mb, timeout_s, network))

    def _map(self, plan: MapPlan) -> Iterator[Any]:
        ex = Executor(self, plan.max_workers, plan.options)
        results = ex.map(plan.fn, *plan.iterables, timeout=plan.timeout, chunksize=plan.chunksize)

        def drain() -> Iterator[Any]:
            finished = False
            try:
                yield from results
                finished = True
            finally:
                if finished:
                    ex.shutdown(wait=False)
                else:  # an exception, a timeout or a loop left early: stop the rest
                    ex.abandon()

        return drain()
