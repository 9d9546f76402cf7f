"""The driver's side of the runtimes' frame protocol (pratai/runtimes/python/bootstrap.py has
the format): frames out, frames in, and what the runtime's answers mean. The first frame says
whether the handler loaded ("ready"); each call is then one frame each way."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from typing import Any

from pratai.drivers.base import CallResult, InstanceSpec
from pratai.errors import SandboxError
from pratai.settings import Settings

HEAD = struct.Struct("!II")  # header length, body length


def bootstrap_config(
    spec: InstanceSpec,
    settings: Settings,
    pipes: tuple[int, int],
    *,
    rlimit_memory: bool,
    rlimit_pids: int | None,
    fsize: int,
) -> dict[str, Any]:
    """The bootstrap's one argument (its "Config keys", as JSON): the runtime's ends of the two
    pipes (requests in, answers out), the handler and the limits it sets itself. A spare gets
    all but the pipes when it is claimed."""
    in_fd, out_fd = pipes
    return {
        "in_fd": in_fd,
        "out_fd": out_fd,
        "handler": spec.handler,
        "name": spec.name or spec.key,
        "memory_mb": spec.memory_mb,
        "max_output": settings.max_output_bytes,
        "max_result": settings.max_result_bytes,
        "rlimit_memory": rlimit_memory,
        "rlimit_pids": rlimit_pids,
        "fsize": fsize,
    }


async def connect(
    channel: Channel, request_fd: int, response_fd: int
) -> tuple[asyncio.ReadTransport, asyncio.WriteTransport]:
    """The driver's ends of the two pipes: answers into `channel`, and a writer for requests."""
    loop = asyncio.get_running_loop()
    response = os.fdopen(response_fd, "rb", 0)
    reader, _ = await loop.connect_read_pipe(lambda: channel, response)
    writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(request_fd, "wb", 0))
    return reader, writer


def frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return HEAD.pack(len(head), len(body)) + head + body


class Channel(asyncio.Protocol):
    """Collects frames from the runtime; one waiter at a time."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.frames: list[tuple[dict[str, Any], bytes]] = []
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= HEAD.size:
            hlen, blen = HEAD.unpack_from(self.buf)
            end = HEAD.size + hlen + blen
            if len(self.buf) < end:
                break
            header = json.loads(bytes(self.buf[HEAD.size : HEAD.size + hlen]))
            self.frames.append((header, bytes(self.buf[HEAD.size + hlen : end])))
            del self.buf[:end]
        if self.frames:
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self) -> tuple[dict[str, Any], bytes] | None:
        """The next frame, or None once the runtime has closed its end."""
        while not self.frames:
            if self.closed:
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.frames.pop(0)


def call_result(head: dict[str, Any], body: bytes, peak_memory_kb: int | None) -> CallResult:
    """A "result" frame as a CallResult; the peak is the runtime's own (maxrss) unless the
    driver measured one."""
    r_len, o_len, e_len = head["lens"]
    return CallResult(
        status=head["status"],
        result=body[:r_len].decode() if head["status"] == "succeeded" else None,
        error=head["error"],
        stdout=body[r_len : r_len + o_len].decode(errors="replace"),
        stderr=body[r_len + o_len : r_len + o_len + e_len].decode(errors="replace"),
        duration_ms=head["duration_ms"],
        peak_memory_kb=peak_memory_kb if peak_memory_kb is not None else head.get("maxrss_kb"),
    )


def load_error(handler: str, head: dict[str, Any]) -> SandboxError:
    """The user's import error, from a first frame that is not "ready"."""
    err = head.get("error") or {}
    return SandboxError(
        f"could not load handler {handler!r}: {err.get('type', 'Error')}: {err.get('message', '')}",
        type=err.get("type", "Error"),
        traceback=err.get("traceback", ""),
        stdout=head.get("stdout", ""),
        stderr=head.get("stderr", ""),
    )
