"""Jobs, I/O-free: `BaseJob`, the surface `Job` and `AsyncJob` share; the requests that create,
find and cancel jobs; the long-poll for a result; how a result becomes a value or an exception.

A job's result is fetched with the server's long-poll (`GET /v1/jobs/{id}/result?timeout=S`,
at most 60 s per request), asked again until the caller's own timeout.

A handle's properties (`status`, `view`, `kind`, `stdout`, `stderr`) are what it last saw, on
both twins: a property never asks the server. `refresh()` asks, and so do `done()` (until the
job has finished), `wait()`, `result()` and `exception()`."""

from __future__ import annotations

import time
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any

from pratai.sdk.pickling import CONTENT_TYPE, loads_b64, remote_exception
from pratai.sdk.protocol import Clock, Deadline, Exchange, Request, call, decode
from pratai.sdk.twins import Awaiting, Blocking, operation

__all__ = ["FINISHED", "BaseJob", "JobOptions", "Outcome", "Requirements", "settle"]

FINISHED = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
SERVER_MAX_WAIT = 60.0  # the server holds a result request at most this long

# (True, value) or (False, exception): what a finished job or one map item came to
Outcome = tuple[bool, Any]
Requirements = list[str] | tuple[str, ...] | None


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
    requirements: Requirements = None,
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


def create(
    body: bytes, opts: JobOptions, python: str, wait: float = 0.0
) -> Exchange[dict[str, Any]]:
    """Sends a pickled payload (see `pratai.sdk.pickling`) as a callable job; its view, or with
    `wait` its result as `/result` answers it (finished or not)."""
    headers = {"Content-Type": CONTENT_TYPE}
    params = opts.params(python) + ([("wait", str(wait))] if wait > 0 else [])
    return call(Request("POST", "/v1/jobs/callable", params, body, headers))


def take_outcome(job: BaseJob, answer: dict[str, Any]) -> None:
    """Settles `job` when `answer` (a result) says it has finished."""
    if answer.get("finished"):
        job._outcome = outcome_of(answer)
        job.view = {**job.view, **{k: v for k, v in answer.items() if k != "result"}}


def fetch(job_id: str) -> Exchange[dict[str, Any]]:
    return call(Request("GET", f"/v1/jobs/{job_id}"))


def listing(status: str | None, limit: int) -> Exchange[list[dict[str, Any]]]:
    params = [("limit", str(limit))] + ([("status", status)] if status else [])
    found = yield from call(Request("GET", "/v1/jobs", params))
    return list(found["jobs"])


class BaseJob:
    """A job on the server. `Job` runs its operations blocking, `AsyncJob` awaited."""

    def __init__(self, client: Blocking | Awaiting, view: dict[str, Any]) -> None:
        self._run = client._run
        self.id: str = view["id"]
        self.view = view
        self._outcome: Outcome | None = None

    @property
    def kind(self) -> str:
        return str(self.view.get("kind", "callable"))

    @property
    def status(self) -> str:
        """The status last seen: `refresh()` asks the server again."""
        return str(self.view["status"])

    @property
    def stdout(self) -> str:
        return str(self.view.get("stdout") or "")

    @property
    def stderr(self) -> str:
        return str(self.view.get("stderr") or "")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.view.get('status')}>"

    @operation
    def refresh(self) -> Exchange[dict[str, Any]]:
        """Asks the server for the job's view (its status, output, error) and keeps it."""
        return refreshed(self)

    @operation
    def done(self) -> Exchange[bool]:
        """Whether the job has finished (asks the server until it has)."""
        if self.status not in FINISHED:
            yield from refreshed(self)
        return self.status in FINISHED

    @operation
    def cancel(self) -> Exchange[bool]:
        """Cancels the job server-side (a running one is killed). False if it had finished."""
        reply = yield Request("POST", f"/v1/jobs/{self.id}/cancel")
        assert reply is not None
        if reply.status == 409:
            return False
        self.view = decode(reply)
        return True

    @operation
    def wait(self, timeout: float | None = None) -> Exchange[str]:
        """Waits until the job has finished (TimeoutError after `timeout` s); its status."""
        yield from settle(self, timeout)
        return self.status

    @operation
    def result(self, timeout: float | None = None) -> Exchange[Any]:
        """The return value; re-raises the remote exception (remote traceback as its cause)."""
        return unwrap((yield from settle(self, timeout)))

    @operation
    def exception(self, timeout: float | None = None) -> Exchange[BaseException | None]:
        """The remote exception, or None if the job succeeded."""
        ok, value = yield from settle(self, timeout)
        return None if ok else value


def refreshed(job: BaseJob) -> Exchange[dict[str, Any]]:
    job.view = yield from fetch(job.id)
    return job.view


def settle(job: BaseJob, timeout: float | None, clock: Clock = time.monotonic) -> Exchange[Outcome]:
    """The job's outcome, long-polling for it until `timeout` (TimeoutError after that)."""
    deadline = Deadline(timeout, clock)
    while job._outcome is None:
        params = [("timeout", str(deadline.left(SERVER_MAX_WAIT)))]
        body = yield from call(Request("GET", f"/v1/jobs/{job.id}/result", params))
        take_outcome(job, body)
        if job._outcome is None and deadline.passed():
            raise TimeoutError(f"job {job.id} did not finish within {timeout} s")
    return job._outcome
