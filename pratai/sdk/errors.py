"""Exceptions of the SDK, and how a remote failure becomes a local exception."""

from __future__ import annotations

from typing import Any

from pratai.client import ApiError


class RemoteError(Exception):
    """A remote call failed and its exception could not be rebuilt locally.

    `type`, `message` and `traceback` are the remote exception's class name, its text and its
    formatted traceback."""

    def __init__(self, type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type}: {message}" if message else type)
        self.type = type
        self.message = message
        self.traceback = traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteError, (self.type, self.message, self.traceback))


class RemoteTraceback(Exception):
    """Set as `__cause__` of a re-raised remote exception, so that printing it shows where it
    was raised remotely (as `concurrent.futures.ProcessPoolExecutor` does)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\nRemote traceback (Pratai):\n{self.text.rstrip()}\n"""'


class RuntimeMismatch(ApiError):
    """The server runs another Python minor version than this client: a pickled callable would
    not load there, so the server refused the job before creating it."""


class BuildFailed(ApiError):
    """A function's package was stored, but building it (its requirements) failed."""


def from_api_error(exc: ApiError) -> ApiError:
    """A more precise ApiError subclass for the error codes the SDK tells apart."""
    code = exc.body.get("error") if isinstance(exc.body, dict) else None
    if code == "runtime_mismatch":
        return RuntimeMismatch(exc.status, str(exc), exc.body)
    return exc
