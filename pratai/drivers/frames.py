"""The driver's side of the runtimes' frame protocol (pratai/runtimes/python/bootstrap.py has
the format): a frame out, and what the runtime's answers mean."""

from __future__ import annotations

import json
import struct
from typing import Any

from pratai.drivers.base import CallResult
from pratai.errors import SandboxError

HEAD = struct.Struct("!II")  # header length, body length


def frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return HEAD.pack(len(head), len(body)) + head + body


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
