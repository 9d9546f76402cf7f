"""The contract between the node agent and a sandbox driver.

An instance is one sandboxed runtime process that has imported one function version and serves
calls one at a time. The node keeps several per version (warm pool) and replaces dead ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class InstanceSpec:
    key: str  # "<function_id>:<version>", used for naming cgroups and logs
    code_dir: Path  # unpacked package, mounted read-only at /code
    env_dir: Path | None  # virtualenv with the requirements, mounted read-only, or None
    handler: str  # "module.func"
    memory_mb: int
    network: bool = False
    env: dict[str, str] = field(default_factory=dict)
    runtime: str = "python"
    name: str = ""  # the function's name, as the handler's context reports it
    files: dict[str, str] = field(default_factory=dict)  # /run/secrets/<name> -> content
    image: str = ""  # runtime "image": the container image id (the handler names the contract)


@dataclass
class CallResult:
    status: str  # "succeeded" | "failed" | "timed_out"
    result: str | None = None  # JSON text of the return value
    error: dict[str, Any] | None = None  # {"type", "message", "traceback"}
    stdout: str = ""
    stderr: str = ""
    duration_ms: float = 0.0
    peak_memory_kb: int | None = None

    @classmethod
    def timed_out(cls, timeout_s: float, elapsed_ms: float) -> CallResult:
        message = f"the function did not finish within {timeout_s:g} s"
        return cls("timed_out", error=failure("TimedOut", message), duration_ms=elapsed_ms)


def failure(kind: str, message: str) -> dict[str, Any]:
    """A call's error raised by the platform, not the user's code: it has no traceback."""
    return {"type": kind, "message": message, "traceback": ""}


class Instance(Protocol):
    init_ms: float  # sandbox start + import, measured by the driver

    @property
    def alive(self) -> bool: ...

    async def call(self, payload: bytes, content_type: str, timeout_s: float) -> CallResult:
        """Run the handler once. Never raises for user-code faults: exceptions, memory limit
        (status failed, error type "MemoryLimitExceeded"), crash, timeout (status timed_out) all
        come back as a CallResult; after a timeout or crash the instance is dead (alive False)."""

    async def stop(self) -> None: ...


class Driver(Protocol):
    name: str

    async def start(self, spec: InstanceSpec) -> Instance:
        """Start a sandbox and import the handler. Raises SandboxError with the user's import
        error (type, message, traceback) in `details` when the code cannot be loaded."""

    def features(self) -> dict[str, Any]:
        """What isolation is active on this machine (for `pratai doctor`)."""

    async def close(self) -> None:
        """Stops what the driver keeps running besides instances (spare sandboxes)."""
