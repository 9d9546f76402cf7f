"""Exceptions of the SDK, and how a remote failure becomes a local exception (the errors both
sides share are in `pratai.errors`)."""

from __future__ import annotations

from typing import Any

from pratai.errors import ApiError, RuntimeMismatch


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


class BuildFailed(ApiError):
    """A function's package was stored, but building it (its requirements) failed."""


def from_api_error(exc: ApiError) -> ApiError:
    """A more precise ApiError subclass for the error codes the SDK tells apart: the server's
    own `RuntimeMismatch` (no such runtime there, or another Python minor version than this
    client's, so a pickled callable would not load) is raised again as it was raised there."""
    return RuntimeMismatch.received(exc) if exc.code == RuntimeMismatch.code else exc
