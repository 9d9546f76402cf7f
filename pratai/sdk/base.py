"""`BaseClient`: the surface `Client` and `AsyncClient` share, written once: finding the server
and key, any request, and the calls that submit, find, list and map jobs. A twin adds its
transport (`_connect`, `_run`) and how it runs a map's jobs at once (`_map`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pratai.credentials import find_credentials
from pratai.sdk import jobs
from pratai.sdk.jobs import BaseJob, JobOptions, Requirements, options
from pratai.sdk.pickling import dumps_call, local_python
from pratai.sdk.protocol import Exchange, Request, call, json_request
from pratai.sdk.twins import operation
from pratai.wire import fields

__all__ = ["BaseClient", "MapPlan"]

J = TypeVar("J", bound=BaseJob)  # Job or AsyncJob
M = TypeVar("M")  # what a map gives: an iterator, or a coroutine of a list


@dataclass(frozen=True)
class MapPlan:
    """A map's calls (`fn` over the zipped `iterables`) and how they run: `chunksize` calls to
    a job (None: `executor.auto_chunksize`), at most `max_workers` jobs in flight."""

    fn: Callable[..., Any]
    iterables: tuple[Iterable[Any], ...]
    chunksize: int | None
    max_workers: int
    timeout: float | None
    options: JobOptions


class BaseClient(Generic[J, M]):
    """A client of a Pratai server.

    `Client()` finds the server and key as the CLI does (PRATAI_URL + PRATAI_API_KEY, or a
    credentials file). `python` overrides the Python version jobs ask for (the default is this
    interpreter's, which is what a pickled callable needs). `max_connections` bounds the async
    client's pool; the sync client keeps one connection per thread."""

    _job: Callable[[Any, dict[str, Any]], J]

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
        self._connect(api_key, timeout, max_connections)

    def _connect(self, api_key: str, timeout: float, max_connections: int) -> None:
        """Opens the transport, and makes `functions` and `events`."""
        raise NotImplementedError

    def _map(self, plan: MapPlan) -> M:
        raise NotImplementedError

    @operation
    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Exchange[Any]:
        """Any endpoint of the HTTP API (`json`: a JSON body): the decoded body of the answer,
        or the ApiError it refused with."""
        query = list(fields(params or {}).items())
        if json is None:
            return call(Request(method, path, query))
        return call(json_request(method, path, json, query))

    @operation
    def submit(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        _requirements: Requirements = None,
        _memory_mb: int | None = None,
        _timeout_s: float | None = None,
        _network: bool | None = None,
        **kwargs: Any,
    ) -> Exchange[J]:
        """Runs `fn(*args, **kwargs)` as a job. Options take reserved underscore names (as
        multyvac's did) so that every other keyword reaches `fn`; `submit_with` takes them
        plainly."""
        opts = options(_requirements, _memory_mb, _timeout_s, _network)
        return self._created(dumps_call(fn, args, kwargs), opts)

    @operation
    def submit_with(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        requirements: Requirements = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        network: bool | None = None,
    ) -> Exchange[J]:
        opts = options(requirements, memory_mb, timeout_s, network)
        return self._created(dumps_call(fn, tuple(args), kwargs or {}), opts)

    @operation
    def create_job(self, body: bytes, opts: JobOptions, wait: float = 0.0) -> Exchange[J]:
        """Sends a pickled payload (see `pratai.sdk.pickling`) as a callable job. With `wait`,
        the server answers once the job has finished or `wait` s have passed, and a job
        finished by then comes back settled: its result needs no request of its own."""
        return self._created(body, opts, wait)

    def _created(self, body: bytes, opts: JobOptions, wait: float = 0.0) -> Exchange[J]:
        answer = yield from jobs.create(body, opts, self.python, wait)
        job = self._handle(answer)
        jobs.take_outcome(job, answer)
        return job

    @operation
    def get_job(self, job_id: str) -> Exchange[J]:
        return self._handle((yield from jobs.fetch(job_id)))

    @operation
    def list_jobs(self, status: str | None = None, limit: int = 50) -> Exchange[list[J]]:
        views = yield from jobs.listing(status, limit)
        return [self._handle(view) for view in views]

    def _handle(self, view: dict[str, Any]) -> J:
        return self._job(self, view)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        max_workers: int = 32,
        timeout: float | None = None,
        requirements: Requirements = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        network: bool | None = None,
    ) -> M:
        """Like the builtin `map`, run remotely: results in order, computed by jobs of
        `chunksize` items each (default: `auto_chunksize`) with `max_workers` jobs in flight.
        The jobs are sent at once. `Client.map` gives an iterator, which raises an item's
        exception when iteration reaches it, and cancels the jobs not yet finished when left
        early (that exception, `timeout`, a `break`); `AsyncClient.map` gives (awaited) the
        list, or raises the first failed item's exception."""
        opts = options(requirements, memory_mb, timeout_s, network)
        return self._map(MapPlan(fn, iterables, chunksize, max_workers, timeout, opts))
