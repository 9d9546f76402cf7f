"""Deployed functions, I/O-free: `BaseFunctions` (deploys, waiting out their builds,
invocations), `BaseInvocation` (an invocation run in the background) and `BaseEvents`
(publishing the events that trigger functions): the surfaces the twins of `client.py` and
`aio.py` share. Properties are what a handle last saw; its methods ask the server."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from pratai.sdk.errors import BuildFailed
from pratai.sdk.jobs import FINISHED, Outcome, unwrap
from pratai.sdk.pickling import remote_exception
from pratai.sdk.protocol import Clock, Deadline, Exchange, Request, backoff, call, form_request
from pratai.sdk.twins import Awaiting, Blocking, operation

__all__ = ["BaseEvents", "BaseFunctions", "BaseInvocation", "package_bytes"]

Inv = TypeVar("Inv")  # Invocation or AsyncInvocation

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


def invoke_request(name: str, payload: Any, background: bool = False) -> Request:
    """Bytes are sent as they are, anything else as JSON."""
    if isinstance(payload, bytes | bytearray):
        content, kind = bytes(payload), "application/octet-stream"
    else:
        content, kind = json.dumps(payload).encode(), "application/json"
    params = [("async", "true")] if background else []
    headers = {"Content-Type": kind}
    return Request("POST", f"/v1/functions/{name}/invoke", params, content, headers)


def invocation_outcome(view: dict[str, Any]) -> Outcome:
    if view["status"] == "succeeded":
        return True, view.get("result")
    error = view.get("error") or {"type": view["status"], "message": f"invocation {view['id']}"}
    return False, remote_exception(error)


def deployed(request: Request, wait: bool) -> Exchange[dict[str, Any]]:
    fn = yield from call(request)
    return (yield from ready(fn)) if wait else dict(fn)


def ready(fn: dict[str, Any]) -> Exchange[dict[str, Any]]:
    """The function once built; BuildFailed if its build failed. Builds have no server-side
    wait: this asks again, backing off."""
    pauses = backoff(0.01)
    while fn["state"] == "building":
        yield next(pauses)
        fn = yield from call(Request("GET", f"/v1/functions/{fn['name']}"))
    if fn["state"] == "build_failed":
        raise BuildFailed(409, f"build of {fn['name']} failed:\n{fn.get('build_log')}", fn)
    return fn


def _required(path: str | Path | None) -> str | Path:
    if path is None:
        raise TypeError("give path= (a folder or a zip file) or package= (zip bytes)")
    return path


class BaseInvocation:
    """An invocation run in the background (`functions.invoke_async`)."""

    def __init__(self, client: Blocking | Awaiting, view: dict[str, Any]) -> None:
        self._run = client._run
        self.id: str = view["id"]
        self.view = view

    @property
    def status(self) -> str:
        """The status last seen: `refresh()` asks the server again."""
        return str(self.view["status"])

    @operation
    def refresh(self) -> Exchange[dict[str, Any]]:
        return refreshed(self)

    @operation
    def result(self, timeout: float | None = None) -> Exchange[Any]:
        """The function's return value; raises its error. Polls: invocations have no long-poll."""
        return settled(self, timeout)


def refreshed(invocation: BaseInvocation) -> Exchange[dict[str, Any]]:
    invocation.view = yield from call(Request("GET", f"/v1/invocations/{invocation.id}"))
    return invocation.view


def settled(
    invocation: BaseInvocation, timeout: float | None, clock: Clock = time.monotonic
) -> Exchange[Any]:
    """The invocation's result, asking again (backing off) until `timeout`."""
    deadline = Deadline(timeout, clock)
    pauses = backoff(0.005)
    while invocation.status not in FINISHED:
        yield from refreshed(invocation)
        if invocation.status in FINISHED:
            break
        if deadline.passed():
            raise TimeoutError(f"invocation {invocation.id} did not finish within {timeout} s")
        yield next(pauses)
    return unwrap(invocation_outcome(invocation.view))


class BaseFunctions(Generic[Inv]):
    """`client.functions`: deploy, update, list, delete and invoke functions."""

    _invocation: Callable[[Any, dict[str, Any]], Inv]

    def __init__(self, client: Blocking | Awaiting) -> None:
        self._client = client
        self._run = client._run

    @operation
    def create(
        self,
        /,
        name: str,
        path: str | Path | None = None,
        *,
        package: bytes | None = None,
        memory: int | None = None,
        timeout: float | None = None,
        wait: bool = True,
        **form: Any,
    ) -> Exchange[dict[str, Any]]:
        """Deploys a folder (zipped in memory) or a zip file; other keywords are the form fields
        of `POST /v1/functions` (network, concurrency, fresh_per_call, handler, event,
        subscribe_to, ...). Waits until the build is ready (raises BuildFailed) unless
        `wait=False`."""
        data = package if package is not None else package_bytes(_required(path))
        fields = {"memory": memory, "timeout": timeout, **form, "name": name}
        return deployed(form_request("POST", "/v1/functions", fields, data), wait)

    @operation
    def update(
        self, /, name: str, path: str | Path | None = None, *, wait: bool = True, **form: Any
    ) -> Exchange[dict[str, Any]]:
        """A new version: the folder or zip at `path` (if given) and the changed form fields."""
        data = package_bytes(path) if path is not None else None
        return deployed(form_request("PATCH", f"/v1/functions/{name}", form, data), wait)

    @operation
    def get(self, name: str) -> Exchange[dict[str, Any]]:
        return call(Request("GET", f"/v1/functions/{name}"))

    @operation
    def list(self) -> Exchange[list[dict[str, Any]]]:
        return call(Request("GET", "/v1/functions"))

    @operation
    def delete(self, name: str) -> Exchange[None]:
        return call(Request("DELETE", f"/v1/functions/{name}"))

    @operation
    def invoke(self, name: str, payload: Any = None) -> Exchange[Any]:
        """Runs the function and returns its (JSON-decoded) result; raises its error."""
        view = yield from call(invoke_request(name, payload))
        return unwrap(invocation_outcome(view))

    @operation
    def invoke_async(self, name: str, payload: Any = None) -> Exchange[Inv]:
        """Starts the function in the background; its invocation, to ask for its result."""
        view = yield from call(invoke_request(name, payload, background=True))
        return self._invocation(self._client, view)


class BaseEvents:
    """`client.events`: publish to a topic."""

    def __init__(self, client: Blocking | Awaiting) -> None:
        self._run = client._run

    @operation
    def publish(
        self,
        topic: str,
        data: Any,
        *,
        id: str | None = None,
        source: str | None = None,
        type: str | None = None,
    ) -> Exchange[str]:
        """Publishes JSON `data` to `topic`; the stored event's id. With `id` (and `source`),
        a second publish of the same event runs its subscribers once."""
        headers = {"Content-Type": "application/json"}
        if id or source or type:  # CloudEvents binary mode
            headers |= {
                "ce-specversion": "1.0",
                "ce-id": id or uuid.uuid4().hex,
                "ce-source": source or "/pratai/sdk",
                "ce-type": type or "pratai.event",
            }
        body = yield from call(
            Request(
                "POST", f"/v1/events/{topic}", content=json.dumps(data).encode(), headers=headers
            )
        )
        return str(body["id"])
