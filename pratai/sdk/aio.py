"""`pratai.AsyncClient`: the `Client` surface for asyncio, on httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from pratai.api_client import parse_response
from pratai.credentials import find_credentials
from pratai.errors import ApiError
from pratai.sdk.client import (
    function_form,
    invocation_outcome,
    invoke_request,
    package_bytes,
    publish_headers,
)
from pratai.sdk.errors import BuildFailed, from_api_error
from pratai.sdk.executor import auto_chunksize
from pratai.sdk.jobs import FINISHED, AsyncJob, JobOptions, chunk_outcomes, options, unwrap
from pratai.sdk.pickling import CONTENT_TYPE, dumps_call, dumps_chunk, local_python

__all__ = ["AsyncClient", "AsyncEvents", "AsyncFunctions", "AsyncInvocation"]


class AsyncInvocation:
    def __init__(self, client: AsyncClient, view: dict[str, Any]) -> None:
        self._client = client
        self.id: str = view["id"]
        self.view = view

    @property
    def status(self) -> str:
        """The status last seen; `await refresh()` asks again."""
        return str(self.view["status"])

    async def refresh(self) -> dict[str, Any]:
        self.view = await self._client._request("GET", f"/v1/invocations/{self.id}")
        return self.view

    async def result(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while (await self.refresh())["status"] not in FINISHED:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"invocation {self.id} did not finish within {timeout} s")
            await asyncio.sleep(pause)  # no server-side wait exists for invocations: back off
            pause = min(pause * 2, 0.25)
        return unwrap(invocation_outcome(self.view))


class AsyncFunctions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        path: str | Path | None = None,
        *,
        package: bytes | None = None,
        memory: int | None = None,
        timeout: float | None = None,
        wait: bool = True,
        **form: Any,
    ) -> dict[str, Any]:
        if package is None and path is None:
            raise TypeError("give path= (a folder or a zip file) or package= (zip bytes)")
        data = package if package is not None else package_bytes(path)  # type: ignore[arg-type]
        fields = function_form(name, {"memory": memory, "timeout": timeout, **form})
        fn = await self._client._request(
            "POST", "/v1/functions", data=fields, files={"file": ("package.zip", data)}
        )
        return await self._ready(fn) if wait else dict(fn)

    async def _ready(self, fn: dict[str, Any]) -> dict[str, Any]:
        pause = 0.01
        while fn["state"] == "building":
            await asyncio.sleep(pause)  # builds have no server-side wait: back off
            pause = min(pause * 2, 0.25)
            fn = await self.get(fn["name"])
        if fn["state"] == "build_failed":
            raise BuildFailed(409, f"build of {fn['name']} failed:\n{fn.get('build_log')}", fn)
        return fn

    async def get(self, name: str) -> dict[str, Any]:
        return dict(await self._client._request("GET", f"/v1/functions/{name}"))

    async def list(self) -> list[dict[str, Any]]:
        return list(await self._client._request("GET", "/v1/functions"))

    async def delete(self, name: str) -> None:
        await self._client._request("DELETE", f"/v1/functions/{name}")

    async def invoke(self, name: str, payload: Any = None) -> Any:
        body, content_type = invoke_request(payload)
        view = await self._client._request(
            "POST",
            f"/v1/functions/{name}/invoke",
            content=body,
            headers={"Content-Type": content_type},
        )
        return unwrap(invocation_outcome(view))

    async def invoke_async(self, name: str, payload: Any = None) -> AsyncInvocation:
        body, content_type = invoke_request(payload)
        view = await self._client._request(
            "POST",
            f"/v1/functions/{name}/invoke",
            params={"async": "true"},
            content=body,
            headers={"Content-Type": content_type},
        )
        return AsyncInvocation(self._client, view)


class AsyncEvents:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def publish(
        self,
        topic: str,
        data: Any,
        *,
        id: str | None = None,
        source: str | None = None,
        type: str | None = None,
    ) -> str:
        import json

        body = await self._client._request(
            "POST",
            f"/v1/events/{topic}",
            content=json.dumps(data).encode(),
            headers=publish_headers(id, source, type),
        )
        return str(body["id"])


class AsyncClient:
    """`Client` for asyncio: every call that talks to the server is awaited."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        python: str | None = None,
        max_connections: int = 100,
    ) -> None:
        if url is None or api_key is None:
            found = find_credentials()
            url, api_key = url or found.url, api_key or found.api_key
        self.url = url.rstrip("/")
        self.python = python or local_python()
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

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ApiError(0, f"cannot reach Pratai at {self.url}: is it running? ({exc})") from exc
        try:
            return parse_response(response)
        except ApiError as exc:
            raise from_api_error(exc) from None

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

    async def submit(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        _requirements: list[str] | tuple[str, ...] | None = None,
        _memory_mb: int | None = None,
        _timeout_s: float | None = None,
        _network: bool | None = None,
        **kwargs: Any,
    ) -> AsyncJob:
        opts = options(_requirements, _memory_mb, _timeout_s, _network)
        return await self.create_job(dumps_call(fn, args, kwargs), opts)

    async def submit_with(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        requirements: list[str] | tuple[str, ...] | None = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        network: bool | None = None,
    ) -> AsyncJob:
        opts = options(requirements, memory_mb, timeout_s, network)
        return await self.create_job(dumps_call(fn, tuple(args), kwargs or {}), opts)

    async def create_job(self, body: bytes, opts: JobOptions) -> AsyncJob:
        view = await self._request(
            "POST",
            "/v1/jobs/callable",
            params=opts.params(self.python),
            content=body,
            headers={"Content-Type": CONTENT_TYPE},
        )
        return AsyncJob(self, view)

    async def get_job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, await self._request("GET", f"/v1/jobs/{job_id}"))

    async def list_jobs(self, status: str | None = None, limit: int = 50) -> list[AsyncJob]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        found = await self._request("GET", "/v1/jobs", params=params)
        return [AsyncJob(self, v) for v in found["jobs"]]

    async def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        max_in_flight: int = 32,
        requirements: list[str] | tuple[str, ...] | None = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        network: bool | None = None,
    ) -> list[Any]:
        """The results in order (the first failed item's exception is raised), computed by
        jobs of `chunksize` items, at most `max_in_flight` at a time."""
        opts = options(requirements, memory_mb, timeout_s, network)
        items = list(zip(*iterables, strict=False))
        size = chunksize or auto_chunksize(len(items), max_in_flight)
        gate = asyncio.Semaphore(max_in_flight)

        async def run(chunk: list[tuple[Any, ...]]) -> list[Any]:
            async with gate:
                job = await self.create_job(dumps_chunk(fn, chunk), opts)
                return list(await job.result())

        tasks = [
            asyncio.ensure_future(run(items[i : i + size])) for i in range(0, len(items), size)
        ]
        try:
            chunks = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        return [unwrap(o) for entries in chunks for o in chunk_outcomes(entries)]
