"""`pratai.AsyncClient`: the asyncio twin of the SDK's surface (`base`, `functions`, `jobs`).
It carries out their exchanges on httpx.AsyncClient and `asyncio.sleep`; every call that
talks to the server is awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

import httpx

from pratai.sdk.base import BaseClient, MapPlan
from pratai.sdk.executor import EARLY_WAIT_S, chunk_bodies
from pratai.sdk.functions import BaseEvents, BaseFunctions, BaseInvocation
from pratai.sdk.jobs import BaseJob, chunk_outcomes, unwrap
from pratai.sdk.protocol import Conversation, Exchange, Pause, Reply, Request
from pratai.sdk.twins import Awaiting
from pratai.wire import unreachable

__all__ = ["AsyncClient", "AsyncEvents", "AsyncFunctions", "AsyncInvocation", "AsyncJob"]

T = TypeVar("T")


class AsyncJob(BaseJob, Awaiting):
    """A job on the server: `await job.result()`."""


class AsyncInvocation(BaseInvocation, Awaiting):
    pass


class AsyncFunctions(BaseFunctions[AsyncInvocation], Awaiting):
    _invocation = AsyncInvocation


class AsyncEvents(BaseEvents, Awaiting):
    pass


class AsyncClient(BaseClient[AsyncJob, Coroutine[Any, Any, list[Any]]], Awaiting):
    _job = AsyncJob

    def _connect(self, api_key: str, timeout: float, max_connections: int) -> None:
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        self.functions = AsyncFunctions(self)
        self.events = AsyncEvents(self)

    async def _run(self, exchange: Exchange[T]) -> T:
        talk = Conversation(exchange)
        for step in talk:
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
            else:
                talk.reply(await self._send(step))
        return talk.result

    async def _send(self, request: Request) -> Reply:
        try:
            response = await self._http.request(
                request.method, request.target, content=request.content, headers=request.headers
            )
        except httpx.ConnectError as exc:
            raise unreachable(self.url, exc) from exc
        return Reply(response.status_code, response.reason_phrase, response.content)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _map(self, plan: MapPlan) -> list[Any]:
        gate = asyncio.Semaphore(plan.max_workers)

        running: dict[AsyncJob, None] = {}  # created, result not in yet

        async def run(body: bytes) -> list[Any]:
            async with gate:
                job = await self.create_job(body, plan.options, EARLY_WAIT_S)
                running[job] = None
                entries = list(await job.result())
                del running[job]
                return entries

        bodies = chunk_bodies(plan.fn, plan.iterables, plan.chunksize, plan.max_workers)
        tasks = [asyncio.ensure_future(run(body)) for body in bodies]
        try:
            async with asyncio.timeout(plan.timeout):
                chunks = await asyncio.gather(*tasks)
        except BaseException:
            # as the blocking map's executor does: jobs whose results nobody will read are
            # cancelled on the server (killed if running), not left to run
            for task in tasks:
                task.cancel()
            await asyncio.gather(*(job.cancel() for job in running), return_exceptions=True)
            raise
        return [unwrap(o) for entries in chunks for o in chunk_outcomes(entries)]
