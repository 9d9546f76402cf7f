"""`pratai.Client`: functions, events and Python callables run as jobs, over the HTTP API."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from pratai.api_client import ApiClient as HttpClient
from pratai.credentials import find_credentials
from pratai.errors import ApiError
from pratai.sdk.errors import BuildFailed, from_api_error
from pratai.sdk.executor import Executor
from pratai.sdk.jobs import FINISHED, Job, JobOptions, Outcome, options, unwrap
from pratai.sdk.pickling import CONTENT_TYPE, dumps_call, local_python, remote_exception
from pratai.sdk.transport import FastHttp

__all__ = ["Client", "Events", "Functions", "Invocation"]

_SKIPPED = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache"}


def package_bytes(path: str | Path) -> bytes:
    """A zip file's bytes, or a folder zipped in memory (caches and VCS folders left out)."""
    source = Path(path)
    if source.is_file():
        return source.read_bytes()
    if not source.is_dir():
        raise FileNotFoundError(f"no such folder or zip file: {source}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(source.rglob("*")):
            relative = file.relative_to(source)
            if file.is_file() and not _SKIPPED.intersection(relative.parts):
                archive.write(file, relative.as_posix())
    return buffer.getvalue()


def function_form(name: str, options: dict[str, Any]) -> dict[str, Any]:
    return {**HttpClient._form(options), "name": name}


def invoke_request(payload: Any) -> tuple[bytes, str]:
    """The body and content type of an invocation: bytes as they are, anything else as JSON."""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload), "application/octet-stream"
    return json.dumps(payload).encode(), "application/json"


def invocation_outcome(view: dict[str, Any]) -> Outcome:
    if view["status"] == "succeeded":
        return True, view.get("result")
    error = view.get("error") or {"type": view["status"], "message": f"invocation {view['id']}"}
    return False, remote_exception(error)


def publish_headers(
    event_id: str | None, source: str | None, event_type: str | None
) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if event_id or source or event_type:  # CloudEvents binary mode
        import uuid

        headers.update(
            {
                "ce-specversion": "1.0",
                "ce-id": event_id or uuid.uuid4().hex,
                "ce-source": source or "/pratai/sdk",
                "ce-type": event_type or "pratai.event",
            }
        )
    return headers


class Invocation:
    """An async invocation of a deployed function (`functions.invoke_async`)."""

    def __init__(self, client: Client, view: dict[str, Any]) -> None:
        self._client = client
        self.id: str = view["id"]
        self.view = view

    @property
    def status(self) -> str:
        if self.view.get("status") not in FINISHED:
            self.refresh()
        return str(self.view["status"])

    def refresh(self) -> dict[str, Any]:
        self.view = self._client._request("GET", f"/v1/invocations/{self.id}")
        return self.view

    def result(self, timeout: float | None = None) -> Any:
        """The function's return value; raises its error. Polls: invocations have no long-poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while self.status not in FINISHED:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"invocation {self.id} did not finish within {timeout} s")
            time.sleep(pause)  # no server-side wait exists for invocations: back off
            pause = min(pause * 2, 0.25)
        return unwrap(invocation_outcome(self.view))


class Functions:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
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
        """Deploys a folder (zipped in memory) or a zip file; other keywords are the form fields
        of `POST /v1/functions` (network, concurrency, handler, event, subscribe_to, ...).
        Waits until the build is ready (raises BuildFailed) unless `wait=False`."""
        data = package if package is not None else package_bytes(_required(path))
        fields = function_form(name, {"memory": memory, "timeout": timeout, **form})
        fn = self._client._request(
            "POST", "/v1/functions", data=fields, files={"file": ("package.zip", data)}
        )
        return self._ready(fn) if wait else dict(fn)

    def update(
        self, name: str, path: str | Path | None = None, *, wait: bool = True, **form: Any
    ) -> dict[str, Any]:
        files = {"file": ("package.zip", package_bytes(path))} if path is not None else None
        fn = self._client._request(
            "PATCH", f"/v1/functions/{name}", data=HttpClient._form(form), files=files
        )
        return self._ready(fn) if wait else dict(fn)

    def _ready(self, fn: dict[str, Any]) -> dict[str, Any]:
        pause = 0.01
        while fn["state"] == "building":
            time.sleep(pause)  # builds have no server-side wait: back off
            pause = min(pause * 2, 0.25)
            fn = self.get(fn["name"])
        if fn["state"] == "build_failed":
            raise BuildFailed(409, f"build of {fn['name']} failed:\n{fn.get('build_log')}", fn)
        return fn

    def get(self, name: str) -> dict[str, Any]:
        return dict(self._client._request("GET", f"/v1/functions/{name}"))

    def list(self) -> list[dict[str, Any]]:
        return list(self._client._request("GET", "/v1/functions"))

    def delete(self, name: str) -> None:
        self._client._request("DELETE", f"/v1/functions/{name}")

    def invoke(self, name: str, payload: Any = None) -> Any:
        """Runs the function and returns its (JSON-decoded) result; raises its error."""
        body, content_type = invoke_request(payload)
        view = self._client._request(
            "POST",
            f"/v1/functions/{name}/invoke",
            content=body,
            headers={"Content-Type": content_type},
        )
        return unwrap(invocation_outcome(view))

    def invoke_async(self, name: str, payload: Any = None) -> Invocation:
        body, content_type = invoke_request(payload)
        view = self._client._request(
            "POST",
            f"/v1/functions/{name}/invoke",
            params={"async": "true"},
            content=body,
            headers={"Content-Type": content_type},
        )
        return Invocation(self._client, view)


class Events:
    def __init__(self, client: Client) -> None:
        self._client = client

    def publish(
        self,
        topic: str,
        data: Any,
        *,
        id: str | None = None,
        source: str | None = None,
        type: str | None = None,
    ) -> str:
        """Publishes JSON `data` to `topic`; the stored event's id. With `id` (and `source`),
        a second publish of the same event runs its subscribers once."""
        body = self._client._request(
            "POST",
            f"/v1/events/{topic}",
            content=json.dumps(data).encode(),
            headers=publish_headers(id, source, type),
        )
        return str(body["id"])


def _required(path: str | Path | None) -> str | Path:
    if path is None:
        raise TypeError("give path= (a folder or a zip file) or package= (zip bytes)")
    return path


class Client:
    """A client of a Pratai server.

    `Client()` finds the server and key as the CLI does (PRATAI_URL + PRATAI_API_KEY, or a
    credentials file). `python` overrides the Python version jobs ask for (the default is this
    interpreter's, which is what a pickled callable needs)."""

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
        self.api = HttpClient(url, api_key, timeout=timeout, max_connections=max_connections)
        self.url = self.api.url
        self._fast = FastHttp(self.url, api_key, timeout)
        self.python = python or local_python()
        self.functions = Functions(self)
        self.events = Events(self)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            if "files" in kwargs or "data" in kwargs:  # multipart: httpx builds it
                return self.api.request(method, path, **kwargs)
            return self._fast.request(method, path, **kwargs)
        except ApiError as exc:
            raise from_api_error(exc) from None

    def close(self) -> None:
        self._fast.close()
        self.api.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # jobs
    def submit(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        _requirements: list[str] | tuple[str, ...] | None = None,
        _memory_mb: int | None = None,
        _timeout_s: float | None = None,
        _network: bool | None = None,
        **kwargs: Any,
    ) -> Job:
        """Runs `fn(*args, **kwargs)` as a job. Options take reserved underscore names (as
        multyvac's did) so that every other keyword reaches `fn`; `submit_with` takes them
        plainly."""
        opts = options(_requirements, _memory_mb, _timeout_s, _network)
        return self.create_job(dumps_call(fn, args, kwargs), opts)

    def submit_with(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        requirements: list[str] | tuple[str, ...] | None = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        network: bool | None = None,
    ) -> Job:
        opts = options(requirements, memory_mb, timeout_s, network)
        return self.create_job(dumps_call(fn, tuple(args), kwargs or {}), opts)

    def create_job(self, body: bytes, opts: JobOptions) -> Job:
        """Sends a pickled payload (see `pratai.sdk.pickling`) as a callable job."""
        view = self._request(
            "POST",
            "/v1/jobs/callable",
            params=opts.params(self.python),
            content=body,
            headers={"Content-Type": CONTENT_TYPE},
        )
        return Job(self, view)

    def get_job(self, job_id: str) -> Job:
        return Job(self, self._request("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(self, status: str | None = None, limit: int = 50) -> list[Job]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return [Job(self, v) for v in self._request("GET", "/v1/jobs", params=params)["jobs"]]

    def executor(
        self,
        max_workers: int = 32,
        *,
        requirements: list[str] | tuple[str, ...] | None = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        network: bool | None = None,
    ) -> Executor:
        """A `concurrent.futures.Executor` running each call as a job; at most `max_workers`
        jobs are in flight (each holds one local thread waiting on its result)."""
        return Executor(self, max_workers, options(requirements, memory_mb, timeout_s, network))

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        max_workers: int = 32,
        timeout: float | None = None,
        requirements: list[str] | tuple[str, ...] | None = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        network: bool | None = None,
    ) -> Iterator[Any]:
        """Like the builtin `map`, run remotely: results in order, computed by jobs of
        `chunksize` items each (default: `auto_chunksize`) with `max_workers` jobs in flight.
        The jobs are sent at once; an item's exception is raised when iteration reaches it.
        Leaving the iteration early (that exception, `timeout`, a `break`) cancels the jobs
        not yet finished."""
        ex = self.executor(
            max_workers,
            requirements=requirements,
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            network=network,
        )
        results = ex.map(fn, *iterables, timeout=timeout, chunksize=chunksize)

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
