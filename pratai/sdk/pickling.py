"""The wire format of callable jobs: cloudpickle payloads out, base64 cloudpickle back."""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle

from pratai.sdk.errors import RemoteError, RemoteTraceback

CONTENT_TYPE = "application/vnd.pratai.pickle"


def local_python() -> str:
    """The `python` a job asks for: a pickled callable only loads under the same minor version."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def dumps_call(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> bytes:
    return bytes(cloudpickle.dumps({"fn": fn, "args": tuple(args), "kwargs": dict(kwargs)}))


def dumps_chunk(fn: Callable[..., Any], chunk: Sequence[tuple[Any, ...]]) -> bytes:
    """One job applying `fn` to each argument tuple of `chunk`, in order."""
    return bytes(cloudpickle.dumps({"fn": fn, "map": [tuple(a) for a in chunk]}))


def loads_b64(data: str) -> Any:
    return cloudpickle.loads(base64.b64decode(data))


_MISSING_MODULE = re.compile(r"No module named '([^']+)'")


def remote_exception(error: dict[str, Any], exc: BaseException | None = None) -> BaseException:
    """The local exception for a remote error dict ({"type", "message", "traceback", ...}).

    The remote exception object itself when it was pickled and loads here, else a
    `RemoteError`; either way its `__cause__` shows the remote traceback. A missing module is
    a `ModuleNotFoundError` naming it and saying how to ask for it."""
    kind = str(error.get("type") or "Error")
    message = str(error.get("message") or "")
    traceback = str(error.get("traceback") or "")
    if kind == "ModuleNotFoundError":
        found = _MISSING_MODULE.search(message)
        module = error.get("module") or (found.group(1) if found else None)
        if module:
            top = str(module).split(".")[0]
            exc = ModuleNotFoundError(
                f"No module named '{module}' on the Pratai runtime: pass requirements=['{top}']"
                f" (client.submit(..., _requirements=['{top}']) or submit_with(...,"
                f" requirements=['{top}'])) with the package that provides it",
                name=str(module),
            )
    if exc is None and error.get("exception"):
        try:
            loaded = loads_b64(str(error["exception"]))
        except Exception:  # a class that does not exist here: fall back to its description
            loaded = None
        if isinstance(loaded, BaseException):
            exc = loaded
    if exc is None:
        exc = RemoteError(kind, message, traceback)
    if traceback:
        exc.__cause__ = RemoteTraceback(traceback)
    return exc
