"""How a node writes what a run came to into its record: an invocation, or a job."""

from __future__ import annotations

from typing import Any, Protocol

from pratai.core.models import Status, now
from pratai.errors import SandboxError


class Record(Protocol):
    """An `Invocation` or a `Job`."""

    status: Status
    error: dict[str, Any] | None
    duration_ms: float | None
    peak_memory_kb: int | None
    finished_at: float | None


class Result(Protocol):
    """A driver's `CallResult` or `CommandResult`."""

    @property
    def status(self) -> str: ...
    @property
    def error(self) -> dict[str, Any] | None: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def peak_memory_kb(self) -> int | None: ...


def finish(record: Record, result: Result) -> None:
    """The result's status, error and measures, and the time the run ended."""
    record.status = Status(result.status)
    record.error = result.error
    record.duration_ms = result.duration_ms
    record.peak_memory_kb = result.peak_memory_kb
    record.finished_at = now()


def fail(record: Record, exc: SandboxError) -> None:
    """A run whose sandbox could not start: the user's import error, or the setup's."""
    record.status = Status.FAILED
    record.error = {
        "type": str(exc.details.get("type", "SandboxError")),
        "message": exc.message,
        "traceback": str(exc.details.get("traceback", "")),
    }
    record.finished_at = now()
