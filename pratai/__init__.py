"""Pratai: a self-hostable, event-driven compute platform.

The SDK's names (`pratai.Client`, `pratai.AsyncClient`, ...) load on first use, so that
`import pratai` stays cheap for the CLI and the server, which never need cloudpickle."""

from __future__ import annotations

# not `from typing import TYPE_CHECKING`: typing alone would double the cost of this import
TYPE_CHECKING = False

__version__ = "0.1.0"
__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncJob",
    "BuildFailed",
    "Client",
    "Job",
    "RemoteError",
    "RuntimeMismatch",
    "__version__",
]

if TYPE_CHECKING:
    from typing import Any

    from pratai.sdk import (
        ApiError,
        AsyncClient,
        AsyncJob,
        BuildFailed,
        Client,
        Job,
        RemoteError,
        RuntimeMismatch,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        import pratai.sdk

        return getattr(pratai.sdk, name)
    raise AttributeError(f"module 'pratai' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
