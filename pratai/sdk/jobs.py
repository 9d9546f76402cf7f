"""Handles on server-side jobs: `Job` (blocking) and `AsyncJob` (asyncio).

A job's result is fetched with the server's long-poll (`GET /v1/jobs/{id}/result?timeout=S`,
at most 60 s per request), asked again until the caller's own timeout."""

from __future__ import annotations

import time
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pratai.sdk.pickling import loads_b64, remote_exception

if TYPE_CHECKING:
    from pratai.sdk.aio import AsyncClient
    from pratai.sdk.client import Client

__all__ = ["FINISHED", "AsyncJob", "Job", "JobOptions", "Outcome"]

FINISHED = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
SERVER_MAX_WAIT = 60.0  # the server holds a result request at most this long

# (True, value) or (False, exception): what a finished job or one map item came to
Outcome = tuple[bool, Any]


@dataclass(frozen=True)
class JobOptions:
    """How a callable job runs: extra PyPI requirements, memory, time limit, network."""

    requirements: tuple[str, ...] = ()
    memory_mb: int | None = None
    timeout_s: float | None = None
    network: bool | None = None

    def params(self, python: str) -> list[tuple[str, str]]:
        out = [("python", python)]
        out += [("requirements", r) for r in self.requirements]
        if self.memory_mb is not None:
            out.append(("memory_mb", str(self.memory_mb)))
        if self.timeout_s is not None:
            out.append(("timeout_s", str(self.timeout_s)))
        if self.network is not None:
            out.append(("network", "true" if self.network else "false"))
        return out


def options(
    requirements: list[str] | tuple[str, ...] | None = None,
    memory_mb: int | None = None,
    timeout_s: float | None = None,
    network: bool | None = None,
) -> JobOptions:
    return JobOptions(tuple(requirements or ()), memory_mb, timeout_s, network)


def outcome_of(body: dict[str, Any]) -> Outcome:
    """The outcome of a finished job from its result body."""
    status = body["status"]
    if status == "succeeded":
        data = body.get("result")
        return True, None if data is None else loads_b64(data)
    if status == "cancelled":
        return False, CancelledError(f"job {body['id']} was cancelled")
    error = body.get("error") or {
        "type": "TimedOut" if status == "timed_out" else "JobFailed",
        "message": f"job {body['id']} {status}",
    }
    return False, remote_exception(error)


def chunk_outcomes(entries: list[Any]) -> list[Outcome]:
    """The outcomes of a map chunk's items: ("ok", value) or ("error", error, exception)."""
    out: list[Outcome] = []
    for entry in entries:
        if entry[0] == "ok":
            out.append((True, entry[1]))
        else:
            out.append((False, remote_exception(entry[1], entry[2] if len(entry) > 2 else None)))
    return out


def unwrap(outcome: Outcome) -> Any:
    ok, value = outcome
    if ok:
        return value
    raise value from value.__cause__


def _wait_for(deadline: float | None) -> float:
    if deadline is None:
        return SERVER_MAX_WAIT
    return round(max(0.0, min(SERVER_MAX_WAIT, deadline - time.monotonic())), 3)


def _timed_out(job_id: str, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"job {job_id} did not finish within {timeout} s")


class _JobBase:
    def __init__(self, view: dict[str, Any]) -> None:
        self.id: str = view["id"]
        self.view = view
        self._outcome: Outcome | None = None

    @property
    def kind(self) -> str:
        return str(self.view.get("kind", "callable"))

    def _finish(self, body: dict[str, Any]) -> None:
        self._outcome = outcome_of(body)
        self.view = {**self.view, **{k: v for k, v in body.items() if k != "result"}}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.view.get('status')}>"


class Job(_JobBase):
    """A job on the server. `status` asks the server (until the job has finished); `result()`
    blocks until it has, and returns its value or raises its exception."""

    def __init__(self, client: Client, view: dict[str, Any]) -> None:
        super().__init__(view)
        self._client = client

    @property
    def status(self) -> str:
        if self.view.get("status") not in FINISHED:
            self.refresh()
        return str(self.view["status"])

    def refresh(self) -> dict[str, Any]:
        self.view = self._client._request("GET", f"/v1/jobs/{self.id}")
        return self.view

    def done(self) -> bool:
        return self.status in FINISHED

    def cancel(self) -> bool:
        """Cancels the job server-side (a running one is killed). False if it had finished."""
        from pratai.errors import ApiError

        try:
            self.view = self._client._request("POST", f"/v1/jobs/{self.id}/cancel")
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def wait(self, timeout: float | None = None) -> str:
        """Blocks until the job has finished (TimeoutError after `timeout` s); its status."""
        self._settle(timeout)
        return str(self.view["status"])

    def result(self, timeout: float | None = None) -> Any:
        """The return value; re-raises the remote exception (remote traceback as its cause)."""
        return unwrap(self._settle(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        ok, value = self._settle(timeout)
        return None if ok else value

    def _settle(self, timeout: float | None) -> Outcome:
        if self._outcome is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                body = self._client._request(
                    "GET", f"/v1/jobs/{self.id}/result", params={"timeout": _wait_for(deadline)}
                )
                if body.get("finished"):
                    self._finish(body)
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise _timed_out(self.id, timeout)
        assert self._outcome is not None
        return self._outcome

    @property
    def stdout(self) -> str:
        return str(self.view.get("stdout") or "")

    @property
    def stderr(self) -> str:
        return str(self.view.get("stderr") or "")


class AsyncJob(_JobBase):
    """`Job` for asyncio: `await job.result()`, `await job.refresh()`, `await job.cancel()`;
    `status` is the status last seen (`await job.refresh()` asks again)."""

    def __init__(self, client: AsyncClient, view: dict[str, Any]) -> None:
        super().__init__(view)
        self._client = client

    @property
    def status(self) -> str:
        return str(self.view["status"])

    async def refresh(self) -> dict[str, Any]:
        self.view = await self._client._request("GET", f"/v1/jobs/{self.id}")
        return self.view

    async def cancel(self) -> bool:
        from pratai.errors import ApiError

        try:
            self.view = await self._client._request("POST", f"/v1/jobs/{self.id}/cancel")
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def wait(self, timeout: float | None = None) -> str:
        await self._settle(timeout)
        return str(self.view["status"])

    async def result(self, timeout: float | None = None) -> Any:
        return unwrap(await self._settle(timeout))

    async def _settle(self, timeout: float | None) -> Outcome:
        if self._outcome is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                body = await self._client._request(
                    "GET", f"/v1/jobs/{self.id}/result", params={"timeout": _wait_for(deadline)}
                )
                if body.get("finished"):
                    self._finish(body)
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise _timed_out(self.id, timeout)
        assert self._outcome is not None
        return self._outcome
